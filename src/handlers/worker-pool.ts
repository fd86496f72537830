// A small pool of worker_threads for CPU work that must not run on the event loop (image preprocessing).
// Protocol: a worker says {ready: true} once its module has loaded; then the pool posts {id, request} and the
// worker answers {id, ok: true, result} or {id, ok: false, error: {status, type, message}} (see serveRequests). Workers start lazily, are unref'd while idle
// (an idle pool never keeps the process alive) and are replaced when one dies.
import { parentPort, Worker, type TransferListItem } from 'node:worker_threads';
import { TorchdError } from '../errors.js';

/** What a worker sends back for a failed request: a TorchdError's fields, so the pool can rebuild it. */
export interface WorkerErrorReply {
  status: number;
  type: string;
  message: string;
}

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: WorkerErrorReply } | { ready: true };

export interface WorkerPoolOptions {
  /** Maximum number of threads (≥ 1). */
  size: number;
  /** Starts one worker thread (see startModuleWorker). */
  start: () => Worker;
  /**
   * The error for requests that were in flight on a worker that died: `reason` says how; `started` is false when
   * it died before its module loaded (a broken install, not a bad request).
   */
  crashError: (reason: string, started: boolean) => Error;
  /** The error for requests that were in flight when close() was called. */
  closedError: () => Error;
  /** Rebuilds a worker's error reply (default: TorchdError with the same status/type/message). */
  replyError?: (e: WorkerErrorReply) => Error;
}

interface Task {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

interface Thread {
  worker: Worker;
  tasks: Map<number, Task>;
  /** Set once the thread died or was closed, so its late events are ignored. */
  gone: boolean;
  /** Set when the worker's module has loaded (its first message). */
  started: boolean;
}

export class WorkerPool {
  private readonly threads: Thread[] = [];
  private nextId = 1;

  constructor(private readonly options: WorkerPoolOptions) {
    if (!Number.isInteger(options.size) || options.size < 1) throw new RangeError(`worker pool size must be an integer ≥ 1, got ${options.size}`);
  }

  /** Thread ids of the live workers (diagnostics and tests). */
  get threadIds(): number[] {
    return this.threads.map((t) => t.worker.threadId);
  }

  /** Requests in flight over all workers. */
  get pending(): number {
    return this.threads.reduce((n, t) => n + t.tasks.size, 0);
  }

  /**
   * Runs one request on the least busy worker (starting one while fewer than `size` run and all are busy).
   * `transfer` lists ArrayBuffers that move to the worker (they are detached here). Rejects with the worker's
   * error, with `crashError` if the worker dies meanwhile, or with `closedError` if the pool is closed meanwhile.
   */
  run<T>(request: unknown, transfer: TransferListItem[] = []): Promise<T> {
    const thread = this.pick();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (thread.tasks.size === 0) thread.worker.ref(); // a request in flight keeps the process alive until it settles
      thread.tasks.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        thread.worker.postMessage({ id, request }, transfer);
      } catch (err) {
        this.settle(thread, id);
        reject(err as Error);
      }
    });
  }

  /** Terminates every worker; requests in flight reject with `closedError`. A later run() starts new workers. */
  async close(): Promise<void> {
    const threads = this.threads.splice(0);
    await Promise.all(threads.map((t) => {
      t.gone = true;
      for (const task of t.tasks.values()) task.reject(this.options.closedError());
      t.tasks.clear();
      return t.worker.terminate();
    }));
  }

  private pick(): Thread {
    let best: Thread | undefined;
    for (const t of this.threads) if (!best || t.tasks.size < best.tasks.size) best = t;
    if (best && (best.tasks.size === 0 || this.threads.length >= this.options.size)) return best;
    return this.spawn();
  }

  private spawn(): Thread {
    const thread: Thread = { worker: this.options.start(), tasks: new Map(), gone: false, started: false };
    thread.worker.unref();
    thread.worker.on('message', (reply: Reply) => {
      if ('ready' in reply) {
        thread.started = true;
        return;
      }
      const task = this.settle(thread, reply.id);
      if (!task) return;
      if (reply.ok) task.resolve(reply.result);
      else task.reject((this.options.replyError ?? ((e) => new TorchdError(e.status, e.type, e.message)))(reply.error));
    });
    let failure: Error | undefined;
    thread.worker.on('error', (err) => { failure = err; });
    thread.worker.on('messageerror', (err) => { failure = err; });
    thread.worker.on('exit', (code) => {
      if (thread.gone) return;
      thread.gone = true;
      const index = this.threads.indexOf(thread);
      if (index >= 0) this.threads.splice(index, 1);
      const reason = failure ? `it threw ${failure.name}: ${failure.message}` : `it exited with code ${code}`;
      for (const task of thread.tasks.values()) task.reject(this.options.crashError(reason, thread.started));
      thread.tasks.clear();
    });
    this.threads.push(thread);
    return thread;
  }

  private settle(thread: Thread, id: number): Task | undefined {
    const task = thread.tasks.get(id);
    if (!task) return undefined;
    thread.tasks.delete(id);
    if (thread.tasks.size === 0 && !thread.gone) thread.worker.unref();
    return task;
  }
}

/**
 * Starts a worker from a module next to the caller: `.js` as it is (compiled dist/); `.ts` (tests and `tsx` runs)
 * through tsx's ESM API, because tsx registers its loader hooks on the main thread only and Node 20 does not pass
 * them to workers, so `--import tsx` in execArgv alone leaves the worker unable to load `.ts`.
 */
export function startModuleWorker(url: URL): Worker {
  const execArgv = workerExecArgv(process.execArgv);
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { execArgv });
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true, execArgv });
}

/** Flags that load code before the entry module; each takes a value (`--flag=value` or `--flag value`). */
const LOADER_FLAGS = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader']);

/**
 * The subset of the process's flags that a worker gets: only the module loader flags above, with their values
 * (an instrumentation `--import`, and the `--require`/`--import` pair the tsx CLI adds, still apply inside the
 * worker). Everything else is dropped because Node refuses to start a worker given a per-process flag
 * (`--trace-gc`, `--input-type` of a `-e` process, ...): passing execArgv through whole made every image 500 on a
 * server started with one. (The `.ts` boot below registers tsx itself, so it needs no flag of its own.)
 */
export function workerExecArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    if (LOADER_FLAGS.has(eq > 0 ? arg.slice(0, eq) : arg)) {
      out.push(arg);
      if (eq < 0 && i + 1 < argv.length) out.push(argv[++i]); // the value given as the next argument
    }
  }
  return out;
}

/**
 * Worker side: answers the pool's requests with `handle` (async allowed). A TorchdError thrown by `handle`
 * travels back with its status/type/message; any other error becomes `fallback(err)`.
 */
export function serveRequests(
  handle: (request: unknown) => Promise<{ result: unknown; transfer?: TransferListItem[] }>,
  fallback: (err: Error) => WorkerErrorReply,
): void {
  const port = parentPort;
  if (!port) throw new Error('serveRequests must run in a worker thread');
  port.on('message', async ({ id, request }: { id: number; request: unknown }) => {
    try {
      const { result, transfer } = await handle(request);
      port.postMessage({ id, ok: true, result } satisfies Reply, transfer ?? []);
    } catch (err) {
      const error = err instanceof TorchdError ? { status: err.status, type: err.type, message: err.message } : fallback(err as Error);
      port.postMessage({ id, ok: false, error } satisfies Reply);
    }
  });
  port.postMessage({ ready: true } satisfies Reply);
}
