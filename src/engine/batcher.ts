// Per model-version dynamic batcher: a bounded job queue, `workers` concurrent native-call slots,
// and the batching policy of design.md (a free worker takes everything compatible that is queued,
// up to batchSize rows, in ONE native call; no idle wait). While another worker is busy, a free one
// takes its fair share of the recent load instead (see pump()), so that two workers at c=4 run
// batches of 2 rather than one running 3 and the other singles.
//
// Cancellation: every native call carries an AbortSignal and the latest deadline of its jobs. When
// each of its jobs has been answered without it (timed out, client gone), the call is cancelled:
// native code stops at its next safe point (before a forward starts, between IG passes), so the
// worker is free again within one pass. A call still running at its deadline + a grace is "stuck":
// counted in `stuck` (describe, the stuck-workers metric) and the version reports not ready.
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { RequestTimeoutError, ServiceUnavailableError, TorchdError } from '../errors.js';
import type { IgOptions, IgResult, Model, OutputTree, Tensor } from '../native.js';
import type { ServerMetrics } from '../metrics/types.js';
import type { Arrival, Batcher, InferOptions, ModelSettings } from './types.js';
import { batchRows, compatibilityKey, concatRows, splitRows, validateArgs } from './tensors.js';
import { mapNativeError, nativeCode } from './native-errors.js';

/** A queued request was dropped because its client went away (never seen by the client). */
export class ClientClosedError extends TorchdError {
  constructor() {
    super(499, 'ClientClosedRequestException', 'Client closed the request before it ran');
  }
}

interface Job {
  kind: 'infer' | 'explain';
  args: Tensor[];
  ig?: IgOptions;
  /** Rows contributed to a batch, -1 when the job must run alone. */
  rows: number;
  key: string;
  enqueuedAt: number;
  submittedAt: number;
  /** Absolute deadline (Date.now() ms) and the limit it stands for (named by the 504). */
  deadline: number;
  timeoutMs: number;
  settled: boolean;
  /** In a native call now (counted in `running` until settled). */
  running: boolean;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
  signal?: AbortSignal;
  onAbort?: () => void;
  /** The native call running this job. */
  call?: NativeCall;
}

/** An announced request (Batcher.expect): counted in `incoming` until it arrives or is withdrawn. */
class Announcement implements Arrival {
  open = true;
  constructor(private readonly batcher: DynamicBatcher) {}
  cancel(): void {
    this.batcher.withdraw(this, true);
  }
}

/** One native call: the jobs it answers and how to stop it. */
interface NativeCall {
  jobs: Job[];
  abort: AbortController;
  /** The latest deadline of its jobs: the call is needed until then. */
  deadline: number;
  stuckTimer?: NodeJS.Timeout;
  stuck: boolean;
}

/**
 * How long past its deadline a native call may run before its worker is reported stuck: one
 * responseTimeout (at least 1 s, at most 30 s). An IG pass is sized by memory, so it normally ends
 * well within this; a single forward that takes longer than its whole timeout again is wedged.
 */
export function stuckGraceMs(settings: ModelSettings): number {
  return Math.min(30_000, Math.max(1_000, settings.responseTimeout * 1000));
}

/** The window of recentLoad(). */
const LOAD_WINDOW_MS = 1000;
/**
 * The longest a free worker waits for its fair share of requests that have not arrived (the next request of a
 * client just answered is a decode away: ≈ 4 ms for a ResNet-18 JPEG on 2 cores, bench/NOTES.md §34).
 */
const SHARE_WAIT_MAX_MS = 10;

export interface BatcherOptions {
  model: Model;
  name: string;
  version: string;
  settings: ModelSettings;
  /** Concurrent native calls (executor threads / streams of the model). */
  workers: number;
  metrics: ServerMetrics;
  logger?: Logger;
  /** Overrides stuckGraceMs(settings) (tests). */
  stuckGraceMs?: number;
}

export class DynamicBatcher implements Batcher {
  private readonly queue: Job[] = [];
  private active = 0;
  private runningJobs = 0;
  private stuckCalls = 0;
  private workers: number;
  private closing = false;
  private delayTimer: NodeJS.Timeout | undefined;
  /** When the free worker began waiting for its share of requests not yet here (cleared when a call starts). */
  private waitingSince: number | undefined;
  private loadPeak = 0;
  private previousLoadPeak = 0;
  private loadWindowStart = 0;
  private idleWaiters: (() => void)[] = [];
  /** Infer requests admitted and being decoded (announced with expect()): what a partial batch may wait for. */
  private incoming = 0;
  /** Native calls this batcher made (forward + integratedGradients): the test hook for batching. */
  nativeCalls = 0;
  /** Native calls it cancelled because none of their jobs needed them any more (test hook). */
  cancelledCalls = 0;

  constructor(private readonly options: BatcherOptions) {
    this.workers = options.workers;
  }

  /** Announced requests not yet arrived (tests, describe). */
  get expected(): number {
    return this.incoming;
  }

  get pending(): number {
    return this.queue.length;
  }

  get running(): number {
    return this.runningJobs;
  }

  get stuck(): number {
    return this.stuckCalls;
  }

  get concurrency(): number {
    return this.workers;
  }

  /** Changes the number of concurrent native calls (the model's executor must be sized to match). */
  setWorkers(n: number): void {
    this.workers = n;
    this.pump();
  }

  infer(args: Tensor[], options: InferOptions = {}): Promise<OutputTree> {
    validateArgs(args);
    return this.enqueue('infer', args, undefined, options) as Promise<OutputTree>;
  }

  explain(args: Tensor[], ig: IgOptions, options: InferOptions = {}): Promise<IgResult> {
    validateArgs(args);
    return this.enqueue('explain', args, ig, options) as Promise<IgResult>;
  }

  expect(): Arrival {
    this.incoming++;
    this.noteLoad();
    return new Announcement(this);
  }

  /** Ends an announcement once; `pump` unless the request is being enqueued right now (it pumps itself). */
  withdraw(arrival: Arrival, pump: boolean): void {
    if (!(arrival instanceof Announcement) || !arrival.open) return;
    arrival.open = false;
    this.incoming--;
    if (pump) this.pump();
  }

  /**
   * Refuses new requests, lets queued and running ones finish, and resolves when nothing is left
   * (unregister drains before the model is disposed). With `abortQueued`, queued requests are
   * rejected with it at once (a forced shutdown has already answered their clients).
   */
  close(abortQueued?: Error): Promise<void> {
    this.closing = true;
    if (abortQueued) {
      for (const job of this.queue.splice(0)) this.settle(job, abortQueued, true);
      this.notifyIdle();
    }
    return this.idle();
  }

  /** Resolves when the queue is empty and no native call is running. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private enqueue(kind: Job['kind'], args: Tensor[], ig: IgOptions | undefined, options: InferOptions): Promise<unknown> {
    const { name, version, settings } = this.options;
    // The announced request is here (or refused): it no longer holds a partial batch back.
    if (options.arrival) this.withdraw(options.arrival, false);
    // Backpressure is answered at once: a full queue or no worker never makes the client wait.
    if (this.closing) {
      return this.refuse(options, new ServiceUnavailableError(`Model ${name} version ${version} is being unregistered`));
    }
    if (this.workers < 1) {
      return this.refuse(options, new ServiceUnavailableError(`No worker is available for model ${name} version ${version}`));
    }
    if (this.queue.length >= settings.jobQueueSize) {
      return this.refuse(options, 
        new ServiceUnavailableError(`Model ${name} version ${version} has too many pending requests (job_queue_size ${settings.jobQueueSize})`),
      );
    }
    if (options.signal?.aborted) return this.refuse(options, new ClientClosedError());

    return new Promise((resolve, reject) => {
      const now = performance.now();
      const job: Job = {
        kind,
        args,
        ig,
        rows: kind === 'infer' ? batchRows(args) : -1,
        key: kind === 'infer' ? compatibilityKey(args) : '',
        enqueuedAt: now,
        submittedAt: Date.now(),
        deadline: 0,
        timeoutMs: 0,
        settled: false,
        running: false,
        resolve,
        reject,
      };
      job.deadline = options.deadline ?? job.submittedAt + settings.responseTimeout * 1000;
      // The 504 names the limit the caller set (the service passes its responseTimeout or the client's
      // deadline), not what was left when the job reached this queue.
      job.timeoutMs = options.timeoutMs ?? Math.max(0, Math.round(job.deadline - job.submittedAt));
      job.timer = setTimeout(() => {
        this.removeQueued(job);
        // The configured limit, not the time left when this job was queued (which the old message gave).
        this.settle(job, new RequestTimeoutError(job.timeoutMs));
      }, Math.max(0, job.deadline - job.submittedAt));
      if (options.signal) {
        job.signal = options.signal;
        job.onAbort = () => {
          // A queued job is dropped; a running one is answered now and its native call cancelled once
          // none of its jobs needs it (see settle).
          this.removeQueued(job);
          this.settle(job, new ClientClosedError());
        };
        options.signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.queue.push(job);
      this.noteLoad();
      this.pump();
    });
  }

  /** An early refusal; a batch that waited for this (announced) request starts without it. */
  private refuse(options: InferOptions, err: Error): Promise<never> {
    if (options.arrival) this.pump();
    return Promise.reject(err);
  }

  private removeQueued(job: Job): boolean {
    const i = this.queue.indexOf(job);
    if (i < 0) return false;
    this.queue.splice(i, 1);
    this.notifyIdle();
    return true;
  }

  /** `fromCall`: the result is what its native call returned (the call is over: nothing to cancel). */
  private settle(job: Job, result: unknown, isError = result instanceof Error, fromCall = false): void {
    if (job.settled) return;
    job.settled = true;
    // Counted out before the caller's continuation runs, so `running` never reports finished work.
    if (job.running) {
      job.running = false;
      this.runningJobs--;
    }
    clearTimeout(job.timer);
    if (job.signal && job.onAbort) job.signal.removeEventListener('abort', job.onAbort);
    const call = job.call;
    // Only for jobs answered without their call (timeout, client gone): aborting a call that has returned would
    // cost an AbortError and an abort event per request on the hot path for nothing.
    if (!fromCall && call && !call.abort.signal.aborted && call.jobs.every((j) => j.settled)) {
      // Nobody waits for this call's result any more: stop it at its next safe point.
      this.cancelledCalls++;
      call.abort.abort();
    }
    if (isError) job.reject(result as Error);
    else job.resolve(result);
  }

  /** Starts native calls while a worker slot is free and work is queued. */
  private pump(): void {
    const { batchSize, maxBatchDelay } = this.options.settings;
    while (this.active < this.workers && this.queue.length > 0) {
      const head = this.queue[0];
      if (head.rows < 0) {
        this.queue.shift();
        this.start([head]);
        continue;
      }
      // With another worker busy, a free worker takes its fair share of the requests in flight, not everything
      // queued: at c=4 on two workers, taking all three that are queued leaves the other worker running singles
      // (its client's next request finds it free and alone), and a single costs ≈ 1.2 × a row of a batch of 2.
      const othersBusy = this.active > 0;
      const load = othersBusy ? this.recentLoad() : 0;
      const cap = othersBusy ? Math.min(batchSize, Math.max(1, Math.ceil(load / this.workers))) : batchSize;
      const picked = this.pick(head, cap);
      const rows = picked.reduce((n, j) => n + j.rows, 0);
      // A partial batch waits only while another worker is busy: at low load an idle device starts at once (no
      // idle delay). It waits for requests the server already holds and is decoding (announced with expect(); at
      // most maxBatchDelay from its oldest request's arrival) and, when the recent load gives each worker a batch
      // of more than one, for its share that is not here yet (at most SHARE_WAIT_MAX_MS from when it began
      // waiting: that is the next request of the client just answered, a decode away).
      if (othersBusy && maxBatchDelay > 0 && rows < cap) {
        const share = Math.min(batchSize, Math.floor(load / this.workers));
        const now = performance.now();
        const untilAnnounced = this.incoming > 0 ? head.enqueuedAt + maxBatchDelay : -Infinity;
        // Requests not here yet are waited for SHARE_WAIT_MAX_MS at most, whatever maxBatchDelay says (TorchServe's
        // default is 100 ms): the recent load may be a burst that is over.
        const untilShare = rows < share ? (this.waitingSince ??= now) + Math.min(maxBatchDelay, SHARE_WAIT_MAX_MS) : -Infinity;
        const wait = Math.max(untilAnnounced, untilShare) - now;
        if (wait > 0) {
          this.armDelay(wait);
          return;
        }
      }
      const taken = new Set(picked);
      for (let i = this.queue.length - 1; i >= 0; i--) if (taken.has(this.queue[i])) this.queue.splice(i, 1);
      this.start(picked);
    }
    if (this.queue.length === 0) this.waitingSince = undefined;
  }

  /**
   * The most requests this version held at once (queued, announced or running) over the last one to two seconds:
   * the client concurrency the batcher sees, which sizes a worker's fair share.
   */
  private recentLoad(): number {
    this.noteLoad();
    return Math.max(this.loadPeak, this.previousLoadPeak);
  }

  /** Records the load now into the current one-second window. */
  private noteLoad(): void {
    const now = performance.now();
    if (now - this.loadWindowStart >= LOAD_WINDOW_MS) {
      this.previousLoadPeak = now - this.loadWindowStart >= 2 * LOAD_WINDOW_MS ? 0 : this.loadPeak;
      this.loadPeak = 0;
      this.loadWindowStart = now;
    }
    const n = this.queue.length + this.incoming + this.runningJobs;
    if (n > this.loadPeak) this.loadPeak = n;
  }

  /** The head job plus every later compatible job that still fits in batchSize rows, in queue order. */
  private pick(head: Job, batchSize: number): Job[] {
    const picked = [head];
    let rows = head.rows;
    for (let i = 1; i < this.queue.length && rows < batchSize; i++) {
      const job = this.queue[i];
      if (job.rows > 0 && job.key === head.key && rows + job.rows <= batchSize) {
        picked.push(job);
        rows += job.rows;
      }
    }
    return picked;
  }

  private armDelay(ms: number): void {
    if (this.delayTimer) return;
    this.delayTimer = setTimeout(() => {
      this.delayTimer = undefined;
      this.pump();
    }, Math.ceil(ms));
  }

  private start(jobs: Job[]): void {
    this.waitingSince = undefined;
    if (this.delayTimer) {
      clearTimeout(this.delayTimer);
      this.delayTimer = undefined;
    }
    this.active++;
    const call: NativeCall = { jobs, abort: new AbortController(), deadline: Math.max(...jobs.map((j) => j.deadline)), stuck: false };
    for (const job of jobs) {
      job.call = call;
      if (job.settled) continue;
      job.running = true;
      this.runningJobs++;
    }
    const { metrics, name, version, logger } = this.options;
    const now = performance.now();
    for (const job of jobs) metrics.stage(name, version, 'queue', now - job.enqueuedAt);
    const grace = this.options.stuckGraceMs ?? stuckGraceMs(this.options.settings);
    call.stuckTimer = setTimeout(() => {
      call.stuck = true;
      this.stuckCalls++;
      metrics.stuck?.(name, version);
      logger?.warn({ model: name, version, pastDeadlineMs: Date.now() - call.deadline, kind: jobs[0].kind }, 'a worker is stuck past its request deadline: not ready until it returns');
    }, Math.max(0, call.deadline + grace - Date.now()));
    this.run(jobs, call)
      .catch((err: unknown) => {
        for (const job of jobs) this.settle(job, this.errorFor(job, err), true, true);
      })
      .finally(() => {
        clearTimeout(call.stuckTimer);
        if (call.stuck) {
          this.stuckCalls--;
          logger?.info({ model: name, version }, 'the stuck worker returned');
        }
        this.active--;
        this.pump();
        this.notifyIdle();
      });
  }

  /** A native rejection as the client sees it: a call cancelled at its deadline is that job's 504. */
  private errorFor(job: Job, err: unknown): TorchdError {
    if (nativeCode(err) === 'E_CANCELLED' && Date.now() >= job.deadline) return new RequestTimeoutError(job.timeoutMs);
    return mapNativeError(err);
  }

  /** What a native call is told: stop when aborted, or by itself at the call's deadline. */
  private callOptions(call: NativeCall): { signal: AbortSignal; deadline: number; captureStack: false } {
    // No caller frames: errorFor() maps a rejection by its code into the client's error, stack dropped.
    return { signal: call.abort.signal, deadline: call.deadline, captureStack: false };
  }

  private notifyIdle(): void {
    if (this.queue.length === 0 && this.active === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async run(jobs: Job[], call: NativeCall): Promise<void> {
    if (jobs.length === 1) {
      await this.runOne(jobs[0], call);
      return;
    }
    const { model, metrics, name, version } = this.options;
    const inputs = jobs[0].args.map((_, a) => concatRows(jobs.map((j) => j.args[a])));
    const rows = jobs.map((j) => j.rows);
    let output: OutputTree;
    const t0 = performance.now();
    try {
      this.nativeCalls++;
      metrics.batch(name, version, inputs[0].shape[0]);
      output = await model.forward(inputs, this.callOptions(call));
    } catch (err) {
      if (nativeCode(err) === 'E_DISPOSED' || nativeCode(err) === 'E_CANCELLED') throw err;
      // One bad request must not fail its neighbours: retry each on its own.
      this.options.logger?.debug({ model: name, version, jobs: jobs.length, err: (err as Error).message }, 'batch failed; retrying one by one');
      for (const job of jobs) await this.runOne(job, call);
      return;
    }
    const ms = performance.now() - t0;
    const parts = splitRows(output, rows);
    if (parts === null) {
      this.options.logger?.warn({ model: name, version }, 'batched output cannot be split per request; running requests one by one');
      for (const job of jobs) await this.runOne(job, call);
      return;
    }
    jobs.forEach((job, i) => {
      metrics.stage(name, version, 'inference', ms);
      this.settle(job, parts[i], false, true);
    });
  }

  private async runOne(job: Job, call: NativeCall): Promise<void> {
    if (job.settled) return; // timed out while its batch ran
    const { model, metrics, name, version, settings } = this.options;
    const t0 = performance.now();
    try {
      this.nativeCalls++;
      let result: unknown;
      if (job.kind === 'explain') {
        // The version's memory budget unless the caller set one: passes are sized to stay under it.
        const ig = { memoryBudget: settings.igMemoryBudget, ...job.ig! };
        result = await model.integratedGradients(job.args, { ...ig, ...this.callOptions(call) });
      } else {
        metrics.batch(name, version, job.rows > 0 ? job.rows : 1);
        result = await model.forward(job.args, this.callOptions(call));
      }
      metrics.stage(name, version, 'inference', performance.now() - t0);
      this.settle(job, result, false, true);
    } catch (err) {
      this.settle(job, this.errorFor(job, err), true, true);
    }
  }
}
