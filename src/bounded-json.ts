// JSON parsing with bounds checked by a linear scan before parsing: a 100 000-deep document never reaches code
// that recurses over it (a stack overflow would be a 500), and an array of a million small arrays or objects (a
// second of JSON.parse and hundreds of MB of objects) is refused before it is built.
import { BadRequestError } from './errors.js';

export interface JsonBounds {
  /** Deepest array/object nesting (`max_json_depth`). */
  maxDepth: number;
  /** Most arrays, objects or strings one array may hold (`max_request_elements`); numbers are not counted. */
  maxElements?: number;
}

/**
 * Scans JSON text (strings skipped) and says which bound it passes, stopping as soon as one is passed. Linear in the
 * text; does not validate the JSON (JSON.parse does that next).
 */
export function jsonBoundExceeded(text: string, bounds: JsonBounds): 'depth' | 'elements' | undefined {
  const maxElements = bounds.maxElements ?? Infinity;
  // Per open container: -1 for an object, else the structured items seen so far in that array.
  const counts: number[] = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22 || c === 0x5b || c === 0x7b) {
      const top = counts.length - 1;
      if (top >= 0 && counts[top] >= 0 && ++counts[top] > maxElements) return 'elements';
      if (c === 0x22) inString = true;
      else {
        counts.push(c === 0x5b ? 0 : -1);
        if (counts.length > bounds.maxDepth) return 'depth';
      }
    } else if (c === 0x5d || c === 0x7d) counts.pop();
  }
  return undefined;
}

/**
 * Parses JSON text (or UTF-8 bytes). Throws BadRequestError naming the bound and its key for too deep a document
 * or too long an array of arrays/objects/strings, "Malformed <what>: <reason>" for invalid JSON.
 */
export function parseJsonBounded(input: string | Buffer, bounds: JsonBounds, what = 'JSON body'): unknown {
  const text = typeof input === 'string' ? input : input.toString('utf8');
  const exceeded = jsonBoundExceeded(text, bounds);
  if (exceeded === 'depth') {
    throw new BadRequestError(`${capitalize(what)} is nested deeper than ${bounds.maxDepth} levels (max_json_depth ${bounds.maxDepth})`);
  }
  if (exceeded === 'elements') {
    throw new BadRequestError(
      `Too many elements: an array in the ${what} holds more than ${bounds.maxElements} arrays, objects or strings (max_request_elements ${bounds.maxElements})`,
    );
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
