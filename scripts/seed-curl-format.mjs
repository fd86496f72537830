// Helper of scripts/seed-curl.sh (plain Node, no dependencies).
//   node scripts/seed-curl-format.mjs BODY_FILE          prints an answer for people: JSON indented, long arrays cut
//                                                         to their first elements and a count ("… 22 more"), and
//                                                         at most 24 lines ("… 300 more lines")
//   node scripts/seed-curl-format.mjs --splice README FRAGMENT
//                                                         replaces README's text between the seed-curl markers
import { readFileSync, writeFileSync } from 'node:fs';

const BEGIN = '<!-- seed-curl:begin (scripts/seed-curl.sh --update-readme writes this part) -->';
const END = '<!-- seed-curl:end -->';

function show(v, indent = '') {
  const inner = indent + '  ';
  if (Array.isArray(v)) {
    const numeric = v.every((x) => typeof x === 'number');
    const keep = numeric ? 5 : 2;
    const items = v.slice(0, keep).map((x) => show(x, inner));
    if (v.length > keep) items.push(`… ${v.length - keep} more`);
    if (numeric) return `[${items.join(', ')}]`;
    return `[\n${items.map((s) => inner + s).join(',\n')}\n${indent}]`;
  }
  if (v !== null && typeof v === 'object') {
    const flat = JSON.stringify(v);
    if (flat.length <= 100) return flat.replace(/,"/g, ', "').replace(/":/g, '": ');
    return `{\n${Object.entries(v).map(([k, x]) => `${inner}${JSON.stringify(k)}: ${show(x, inner)}`).join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(v);
}

if (process.argv[2] === '--splice') {
  const [readme, fragment] = process.argv.slice(3);
  const text = readFileSync(readme, 'utf8');
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) {
    console.error(`${readme} has no "${BEGIN}" … "${END}" section`);
    process.exit(1);
  }
  writeFileSync(readme, `${text.slice(0, a + BEGIN.length)}\n${readFileSync(fragment, 'utf8').trimEnd()}\n${text.slice(b)}`);
} else {
  let text = '';
  try {
    text = readFileSync(process.argv[2], 'utf8');
  } catch {
    // no body (curl failed): nothing to show
  }
  let shown;
  try {
    shown = show(JSON.parse(text));
  } catch {
    shown = text.length > 300 ? `${text.slice(0, 300)}… (${text.length} bytes)` : text;
  }
  const lines = shown.split('\n');
  const MAX_LINES = 24;
  console.log(lines.length > MAX_LINES ? [...lines.slice(0, MAX_LINES - 1), `… ${lines.length - MAX_LINES + 1} more lines`].join('\n') : shown);
}
