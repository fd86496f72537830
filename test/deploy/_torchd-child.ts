// Shared by the deploy tests: runs `torchd` (bin/torchd.js) as a child process, as a container or a
// replica runs it, and follows its JSON log lines. Not a test file (no .test. in its name).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/torchd.js', import.meta.url));

export interface TorchdChild {
  child: ChildProcessWithoutNullStreams;
  /** Every JSON log line so far. */
  lines: Record<string, unknown>[];
  /** stderr so far (config errors, crashes). */
  stderr(): string;
  /** Resolves with the first log line whose msg is `msg` (already seen or still to come). */
  waitFor(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with [code, signal] once the process has exited. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

/**
 * Spawns `[...prefix, node, bin/torchd.js, ...args]` (prefix e.g. `ip netns exec NS`), or `options.argv` as
 * given (e.g. a PATH shim; looked up on options.env.PATH).
 */
export function spawnTorchd(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; prefix?: string[]; argv?: string[] } = {},
): TorchdChild {
  const argv = options.argv ?? [...(options.prefix ?? []), process.execPath, BIN, ...args];
  const child = spawn(argv[0], argv.slice(1), { cwd: options.cwd, env: options.env ?? process.env, stdio: 'pipe' });
  const lines: Record<string, unknown>[] = [];
  const waiters: [string, (l: Record<string, unknown>) => void][] = [];
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  createInterface({ input: child.stdout }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text);
    } catch {
      return;
    }
    lines.push(line);
    for (const [msg, resolve] of waiters) if (line.msg === msg) resolve(line);
  });
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal])));
  return {
    child,
    lines,
    stderr: () => stderr,
    exited,
    waitFor(msg, timeoutMs = 60_000) {
      const found = lines.find((l) => l.msg === msg);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${msg}" log line within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`)), timeoutMs);
        const onExit = () => reject(new Error(`torchd exited before "${msg}"; stderr: ${stderr.slice(-2000)}`));
        void exited.then(onExit);
        waiters.push([msg, (l) => (clearTimeout(timer), resolve(l))]);
      });
    },
  };
}
