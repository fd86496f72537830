// Reads deploy/Dockerfile for the deploy tests: instructions with continuation lines joined and comment
// lines dropped, the final stage, and its ENV. Not a test file.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DOCKERFILE = fileURLToPath(new URL('../../deploy/Dockerfile', import.meta.url));

export interface Instruction {
  op: string;
  rest: string;
}

export function dockerfileInstructions(file = DOCKERFILE): Instruction[] {
  const out: Instruction[] = [];
  let current = '';
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (/^\s*#/.test(line)) continue;
    current += line.replace(/\\\s*$/, ' ');
    if (/\\\s*$/.test(line)) continue;
    if (current.trim()) {
      const m = /^\s*(\w+)\s+(.*)$/.exec(current.trim())!;
      out.push({ op: m[1].toUpperCase(), rest: m[2].trim() });
    }
    current = '';
  }
  return out;
}

/** The instructions after the last FROM: what the image that runs is made of. */
export function finalStage(): Instruction[] {
  const all = dockerfileInstructions();
  let last = 0;
  all.forEach((i, k) => {
    if (i.op === 'FROM') last = k;
  });
  return all.slice(last + 1);
}

/** The final stage's ENV (TS_* defaults and the rest), `$PATH`-style references left as written. */
export function dockerfileEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { op, rest } of finalStage()) {
    if (op !== 'ENV') continue;
    for (const m of rest.matchAll(/(\w+)=(\S+)/g)) env[m[1]] = m[2];
  }
  return env;
}
