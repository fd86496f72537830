// What every gRPC method shares, so each codec stays a few lines: token check, refusal while draining,
// cancellation and deadline, error → status mapping, one log line and one metrics sample per call,
// and the set of open streams that shutdown ends with UNAVAILABLE.
import {
  Metadata,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { ServiceUnavailableError, type TorchdError } from '../errors.js';
import { tokenError } from '../http/auth.js';
import type { AppDeps } from '../http/types.js';
import { asTorchdError, errorStatus } from './status.js';

/** Per-call facts a method fills in or reads. */
export interface CallContext {
  /** Request id: the client's `x-request-id` metadata or a fresh UUID; sent back as metadata. */
  id: string;
  /** Aborted when the client cancels or its deadline passes: queued work is dropped. */
  signal: AbortSignal;
  /** The client's deadline (Date.now() ms), when it set one. */
  deadline?: number;
  /** Set by a method once it has resolved the model: the metrics and log labels. */
  model?: string;
  version?: string;
}

/**
 * One listener's view of the lifecycle: readiness (src/lifecycle.ts when the server has one, else the
 * registry), `closing` once the listener drains (new calls refused, open streams asked to end), and
 * change notifications for health Watch streams.
 */
export class ListenerState {
  closing = false;
  private readonly streams = new Set<(reason?: string) => void>();
  private readonly changeListeners = new Set<() => void>();

  constructor(private readonly deps: Pick<AppDeps, 'registry' | 'lifecycle'>) {}

  /** Shutdown has begun (readiness false for good), or this listener is closing. */
  get draining(): boolean {
    return this.closing || (this.deps.lifecycle?.draining ?? false);
  }

  /** The server's readiness: every model's default version ready, not starting, not draining. */
  ready(): boolean {
    if (this.closing) return false;
    return this.deps.lifecycle ? this.deps.lifecycle.isReady() : this.deps.registry.healthy();
  }

  /** Registers a stream's ender (called with the reason when the listener closes); returns its remover. */
  trackStream(end: (reason?: string) => void): () => void {
    this.streams.add(end);
    return () => this.streams.delete(end);
  }

  onChange(fn: () => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  /** Readiness may have changed (shutdown began): watchers re-read it now rather than at their next poll. */
  notifyChange(): void {
    for (const fn of [...this.changeListeners]) fn();
  }

  /** The listener drains: new calls are refused, every open stream is asked to end. */
  close(reason?: string): void {
    this.closing = true;
    this.notifyChange();
    for (const end of [...this.streams]) end(reason);
  }
}

export interface ServiceOptions {
  deps: AppDeps;
  state: ListenerState;
  /** Token for `authorization: Bearer <key>` metadata, when token auth is on. */
  key?: string;
  /** Methods that answer without a token (health and liveness, like /ping). */
  open?: ReadonlySet<string>;
  /** Count calls in the request metrics (inference port). */
  metered: boolean;
  /** Service name for log lines, e.g. "inference.GRPCInferenceService". */
  service: string;
}

export const SHUTTING_DOWN = 'torchd is shutting down: retry on another instance';

/** The UNAVAILABLE an open stream ends with: the forced-close reason when the shutdown timeout passed. */
export function shuttingDown(reason?: string): ServiceUnavailableError {
  return new ServiceUnavailableError(reason ? `torchd is shutting down: ${reason} before this stream ended` : SHUTTING_DOWN);
}

type Call = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>;

/** Bidirectional methods: answered in order by answerInOrder, metered per request. */
const BIDI_METHODS = new Set(['StreamPredictions2', 'ModelStreamInfer']);

export interface OpenedCall {
  ctx: CallContext;
  /** Why the call is refused before any work (token, draining), if it is. */
  refused?: TorchdError;
  /** Logs the call and records its metrics sample, once. */
  finish: (err?: TorchdError) => void;
}

/**
 * Builds the per-call context. `message` opens one request of a bidirectional stream instead: it shares
 * the stream's id, signal and deadline (`parent`), and the stream was already checked when it opened.
 */
export function openCall(o: ServiceOptions, method: string, call: Call, parent?: CallContext): OpenedCall {
  const start = performance.now();
  let ctx: CallContext;
  let refused: TorchdError | undefined;
  if (parent) {
    ctx = { id: parent.id, signal: parent.signal, deadline: parent.deadline };
  } else {
    const given = call.metadata.get('x-request-id')[0];
    const id = typeof given === 'string' && given.length > 0 && given.length <= 200 ? given : randomUUID();
    const controller = new AbortController();
    (call as ServerUnaryCall<unknown, unknown>).on('cancelled', () => controller.abort(new Error('client cancelled the call or its deadline passed')));
    const rawDeadline = call.getDeadline();
    const deadlineMs = rawDeadline instanceof Date ? rawDeadline.getTime() : rawDeadline;
    ctx = { id, signal: controller.signal, deadline: Number.isFinite(deadlineMs) ? deadlineMs : undefined };
    const sent = new Metadata();
    sent.set('x-request-id', id);
    call.sendMetadata(sent);
    const isOpen = o.open?.has(method) ?? false;
    // Refused only once the listener drains: during drain_delay calls are still served (readiness is false).
    if (o.state.closing && !isOpen) refused = new ServiceUnavailableError(SHUTTING_DOWN);
    else if (o.key !== undefined && !isOpen) {
      const auth = call.metadata.get('authorization')[0];
      refused = tokenError(typeof auth === 'string' ? auth : undefined, o.key);
    }
  }

  let finished = false;
  const finish = (err?: TorchdError) => {
    if (finished) return;
    finished = true;
    const ms = Math.round((performance.now() - start) * 1000) / 1000;
    const status = err ? err.status : call.cancelled ? 499 : 200;
    // A bidirectional stream is metered per request; the stream itself is only logged.
    if (o.metered && !(BIDI_METHODS.has(method) && !parent)) o.deps.metrics.request(ctx.model, ctx.version, status, ms, 'grpc');
    const line = { id: ctx.id, protocol: 'grpc', method: `/${o.service}/${method}`, model: ctx.model ?? null, version: ctx.version ?? null, status, ms };
    if (status >= 500) o.deps.logger.error({ ...line, err: err?.message }, 'request failed');
    else o.deps.logger.info(line, 'request');
  };
  return { ctx, refused, finish };
}

/** A unary method: `fn` returns the response message or throws. */
export function unary<Req, Res>(o: ServiceOptions, method: string, fn: (request: Req, ctx: CallContext) => Promise<Res> | Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const { ctx, refused, finish } = openCall(o, method, call as Call);
    const fail = (err: unknown) => {
      const t = asTorchdError(err, o.deps.config.maxRequestSize);
      finish(t);
      callback(errorStatus(t));
    };
    if (refused) return fail(refused);
    Promise.resolve()
      .then(() => fn(call.request, ctx))
      .then((res) => {
        finish();
        callback(null, res);
      }, fail);
  };
}

/** An error as it travels inside a message (google.rpc.Status; PredictionResponse.status). */
export function statusMessage(err: unknown, maxRequestSize: number): { code: number; message: string; details: never[] } {
  const s = errorStatus(asTorchdError(err, maxRequestSize));
  return { code: s.code, message: s.details, details: [] };
}

/** Ends a server stream with a status (grpc-js sends an 'error' event's status as the trailers). */
export function endStream(call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>, err?: TorchdError): void {
  if (call.cancelled || call.writableEnded || call.destroyed) return;
  if (err) call.emit('error', errorStatus(err));
  else call.end();
}


/**
 * A bidirectional stream answered in arrival order: every request starts at once (so they batch) and its
 * answer, or `failed(err, request)` for one that failed, is written in order while the stream stays open.
 * Each request is one request in the metrics and the log. On shutdown the requests already received are
 * answered, then the stream ends UNAVAILABLE.
 */
export function answerInOrder<Req, Res>(
  o: ServiceOptions,
  method: string,
  call: ServerDuplexStream<Req, Res>,
  handle: (request: Req, ctx: CallContext) => Promise<Res>,
  failed: (err: unknown, request: Req) => Res,
): void {
  const opened = openCall(o, method, call as Call);
  if (opened.refused) {
    opened.finish(opened.refused);
    return endStream(call as ServerDuplexStream<unknown, unknown>, opened.refused);
  }
  let tail: Promise<void> = Promise.resolve();
  let ended = false;
  const finishStream = (err?: TorchdError) => {
    if (ended) return;
    ended = true;
    untrack();
    void tail.then(() => endStream(call as ServerDuplexStream<unknown, unknown>, err));
  };
  const untrack = o.state.trackStream((reason) => finishStream(shuttingDown(reason)));
  call.on('data', (request: Req) => {
    if (ended) return;
    const one = openCall(o, method, call as Call, opened.ctx);
    const answer = handle(request, one.ctx).then(
      (res) => (one.finish(), res),
      (err: unknown) => {
        one.finish(asTorchdError(err, o.deps.config.maxRequestSize));
        return failed(err, request);
      },
    );
    tail = tail.then(async () => {
      const res = await answer;
      if (!call.cancelled && !call.writableEnded) call.write(res);
    });
  });
  call.on('end', () => {
    opened.finish();
    finishStream();
  });
  call.on('cancelled', () => {
    opened.finish();
    ended = true;
    untrack();
  });
}
