// JSON parsing with a nesting bound checked before parsing: a 100 000-deep document is refused by a linear scan
// instead of reaching code that recurses over it (a stack overflow would be a 500).
import { BadRequestError } from './errors.js';

/**
 * Deepest array/object nesting of JSON text (strings skipped), stopping as soon as it passes `max`. Linear in the
 * text; does not validate the JSON.
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * Parses JSON text (or UTF-8 bytes). Throws BadRequestError "<what>: nested deeper than <max> levels (max_json_depth)"
 * for too deep a document, "Malformed <what>: <reason>" for invalid JSON.
 */
export function parseJsonBounded(input: string | Buffer, maxDepth: number, what = 'JSON body'): unknown {
  const text = typeof input === 'string' ? input : input.toString('utf8');
  if (jsonDepthExceeds(text, maxDepth)) {
    throw new BadRequestError(`${capitalize(what)} is nested deeper than ${maxDepth} levels (max_json_depth ${maxDepth})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`Malformed ${what}: ${(err as Error).message}`);
  }
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
