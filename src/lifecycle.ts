// The server's lifecycle, shared by every listener (HTTP today, gRPC next): one readiness answer
// combined from several conditions, and the drain that runs on SIGTERM.
//
// Shutdown, in order (design.md "Lifecycle"):
//   1. readiness goes false at once (draining); liveness stays true; onDraining callbacks run
//   2. `drain_delay`: keep serving everything while load balancers notice the failed readiness
//   3. every drainable stops accepting and finishes what it accepted (HTTP: see src/http/connections.ts)
//   4. disposers run (models, image workers); the phase becomes 'stopped'
// Past `shutdown_timeout` (counted from the signal, drain_delay included) step 3 is cut short: each
// drainable answers what remains (503 / UNAVAILABLE) and closes; disposers are told it was forced.
import type { Logger } from 'pino';

export type LifecyclePhase = 'starting' | 'serving' | 'draining' | 'stopped';

/** A listener the shutdown drains (an HTTP server, a gRPC server, …). */
export interface Drainable {
  /** For logs, e.g. "inference http://127.0.0.1:8080". */
  readonly name: string;
  /**
   * Stop accepting new connections/calls, finish every accepted one, close the connections.
   * Resolves when nothing accepted is left. Called once.
   */
  drain(): Promise<void>;
  /**
   * The shutdown timeout passed: answer whatever is still unanswered with "unavailable" (HTTP 503,
   * gRPC UNAVAILABLE) and close. Must not reset a connection whose request could still be answered.
   * `reason` completes the sentence "torchd is shutting down: <reason>".
   */
  forceClose(reason?: string): Promise<void>;
}

/** Runs after the listeners are drained; `forced` when the shutdown timeout cut the drain short. */
export type Disposer = (info: { forced: boolean }) => Promise<void> | void;

/** A readiness condition: true when ready, false or a reason string when not. */
export type ReadinessCheck = () => boolean | string;

export interface Readiness {
  /** Every check passes and the server is serving (not starting, not draining). */
  ready: boolean;
  /** Shutdown has begun: readiness stays false from here on. */
  draining: boolean;
  /** Why it is not ready: "draining", "starting", or each failed check's name (or its own reason). */
  reasons: string[];
}

export interface ShutdownOptions {
  /** Keep serving this long after readiness goes false (ms). Default 0. */
  drainDelayMs?: number;
  /** From the start of shutdown to the forced end (ms), drain delay included. Default 30 000. */
  timeoutMs?: number;
}

export interface ShutdownReport {
  /** The timeout cut the drain short (remaining requests were answered 503). */
  forced: boolean;
  /** Milliseconds from the start of shutdown to 'stopped'. */
  ms: number;
}

export class Lifecycle {
  private current: LifecyclePhase = 'starting';
  private readonly checks = new Map<string, ReadinessCheck>();
  private readonly drainingListeners = new Set<() => void>();
  private readonly drainables: Drainable[] = [];
  private readonly disposers: Disposer[] = [];
  private shutdownPromise: Promise<ShutdownReport> | undefined;

  constructor(private readonly logger?: Logger) {}

  get phase(): LifecyclePhase {
    return this.current;
  }

  /** Shutdown has begun (readiness is false for good). */
  get draining(): boolean {
    return this.current === 'draining' || this.current === 'stopped';
  }

  /** Liveness: the process is up and not wedged; stays true through the drain. */
  isLive(): boolean {
    return this.current !== 'stopped';
  }

  isReady(): boolean {
    return this.readiness().ready;
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    if (this.current === 'starting') reasons.push('starting');
    if (this.draining) reasons.push('draining');
    for (const [name, check] of this.checks) {
      let result: boolean | string;
      try {
        result = check();
      } catch (err) {
        result = `${name}: ${(err as Error).message}`;
      }
      if (result !== true) reasons.push(typeof result === 'string' ? result : name);
    }
    return { ready: reasons.length === 0, draining: this.draining, reasons };
  }

  /**
   * Adds a readiness condition (e.g. "every model's default version has a worker", "no worker is
   * stuck"). A name registered again replaces the earlier check. Returns a function that removes it.
   */
  addReadinessCheck(name: string, check: ReadinessCheck): () => void {
    this.checks.set(name, check);
    return () => {
      if (this.checks.get(name) === check) this.checks.delete(name);
    };
  }

  /**
   * `cb` runs once, synchronously, when shutdown begins (at once if it already has): the moment
   * another listener must report not-ready (e.g. gRPC health NOT_SERVING). Returns an unsubscribe.
   */
  onDraining(cb: () => void): () => void {
    if (this.draining) {
      cb();
      return () => {};
    }
    this.drainingListeners.add(cb);
    return () => this.drainingListeners.delete(cb);
  }

  /** A listener to drain on shutdown; drained in parallel with the others. */
  addDrainable(drainable: Drainable): void {
    this.drainables.push(drainable);
  }

  /** Runs after the listeners are drained, in the order added (models first, then workers). */
  addDisposer(disposer: Disposer): void {
    this.disposers.push(disposer);
  }

  /** Start-up is complete: readiness now depends on the checks alone. */
  markServing(): void {
    if (this.current === 'starting') this.current = 'serving';
  }

  /** Drains and disposes (see the file comment). Idempotent: later calls get the first call's promise. */
  shutdown(options: ShutdownOptions = {}): Promise<ShutdownReport> {
    this.shutdownPromise ??= this.runShutdown(options);
    return this.shutdownPromise;
  }

  private async runShutdown({ drainDelayMs = 0, timeoutMs = 30_000 }: ShutdownOptions): Promise<ShutdownReport> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    this.current = 'draining';
    this.logger?.info({ drainDelayMs, timeoutMs }, 'draining: readiness is false; serving on during the drain delay');
    for (const cb of this.drainingListeners) {
      try {
        cb();
      } catch (err) {
        this.logger?.error({ err }, 'onDraining callback failed');
      }
    }
    this.drainingListeners.clear();

    if (drainDelayMs > 0) await sleep(Math.min(drainDelayMs, Math.max(0, deadline - Date.now())));
    this.logger?.info({ listeners: this.drainables.map((d) => d.name) }, 'draining: no new connections; finishing accepted requests');

    const drained = Promise.all(
      this.drainables.map((d) =>
        d.drain().catch((err: unknown) => this.logger?.error({ err, listener: d.name }, 'drain failed')),
      ),
    );
    let timer: NodeJS.Timeout | undefined;
    const forced = await Promise.race([
      drained.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), Math.max(0, deadline - Date.now()));
      }),
    ]);
    clearTimeout(timer);
    if (forced) {
      this.logger?.warn({ timeoutMs }, 'shutdown_timeout passed: answering what remains with 503');
      await Promise.all(
        this.drainables.map((d) =>
          d.forceClose(`shutdown_timeout (${timeoutMs / 1000} s) passed`).catch((err: unknown) => this.logger?.error({ err, listener: d.name }, 'forced close failed')),
        ),
      );
    }
    for (const dispose of this.disposers) {
      try {
        await dispose({ forced });
      } catch (err) {
        this.logger?.error({ err }, 'dispose failed during shutdown');
      }
    }
    this.current = 'stopped';
    return { forced, ms: Date.now() - started };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
