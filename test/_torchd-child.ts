// Shared by every test that runs `torchd` (bin/torchd.js) as a child process, as a user, a container or a
// replica runs it: spawns it and follows its JSON log lines. Not a test file (no .test. in its name).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../bin/torchd.js', import.meta.url));

/** Environment for a torchd whose three HTTP listeners take free loopback ports and that starts no gRPC listener. */
export const LOOPBACK_HTTP_ONLY_ENV = {
  TS_INFERENCE_ADDRESS: 'http://127.0.0.1:0',
  TS_MANAGEMENT_ADDRESS: 'http://127.0.0.1:0',
  TS_METRICS_ADDRESS: 'http://127.0.0.1:0',
  TS_ENABLE_GRPC: 'false',
} as const;

export interface TorchdExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() when the exit was seen (drain tests compare it with when the signal was sent). */
  at: number;
}

export interface WaitOptions {
  timeoutMs?: number;
  /** Match a log line whose msg starts with the text (some messages carry figures after a fixed start). */
  prefix?: boolean;
}

export interface TorchdChild {
  child: ChildProcessWithoutNullStreams;
  /** Every JSON log line so far. */
  lines: Record<string, unknown>[];
  /** stderr so far (config errors, crashes). */
  stderr(): string;
  /**
   * Resolves with the first log line whose msg is `msg` (or starts with it, with `prefix`), already seen or still
   * to come; rejects on timeout (default 60 s) or when torchd exits first, with the end of stderr.
   */
  waitFor(msg: string, options?: number | WaitOptions): Promise<Record<string, unknown>>;
  /** Resolves once the process has exited. */
  exited: Promise<TorchdExit>;
  /** SIGKILL if it is still running; resolves with its exit. */
  kill(): Promise<TorchdExit>;
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
  const waiters: [(line: Record<string, unknown>) => boolean, (line: Record<string, unknown>) => void][] = [];
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
    for (const [matches, resolve] of waiters) if (matches(line)) resolve(line);
  });
  const exited = new Promise<TorchdExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
  return {
    child,
    lines,
    stderr: () => stderr,
    exited,
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
    waitFor(msg, options = {}) {
      const { timeoutMs = 60_000, prefix = false } = typeof options === 'number' ? { timeoutMs: options } : options;
      const matches = (l: Record<string, unknown>) => (prefix ? String(l.msg).startsWith(msg) : l.msg === msg);
      const found = lines.find(matches);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${msg}" log line within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`)), timeoutMs);
        // Lines still buffered in the pipe are read before 'exit' is acted on: a line logged just before exiting counts.
        void exited.then(() => setTimeout(() => (clearTimeout(timer), reject(new Error(`torchd exited before "${msg}"; stderr: ${stderr.slice(-2000)}`))), 50));
        waiters.push([matches, (l) => (clearTimeout(timer), resolve(l))]);
      });
    },
  };
}
