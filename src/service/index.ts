// The one inference service (design.md "service" layer): admission (a queue slot or an immediate 503) → bounds →
// handler preprocess → batcher → handler postprocess, with the deadline, cancellation and stage metrics — once for
// every protocol. It is the only caller of a model version's batcher. The contract is in ./types.ts.
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { ClientClosedError } from '../engine/batcher.js';
import { concatRows, DTYPE_TO_V2, type NumericDatatype } from '../engine/tensors.js';
import type { ModelVersion, Registry } from '../engine/types.js';
import { BadRequestError, RequestTimeoutError, ServiceUnavailableError, TorchdError } from '../errors.js';
import { createModelHandler, TensorJson, type DecodeContext, type Example, type ModelHandler } from '../handlers/index.js';
import type { ServerMetrics, Stage } from '../metrics/types.js';
import type { IgResult, OutputTree, Tensor } from '../native.js';
import { checkElementCount, OFF_LOOP_JSON_BYTES, parseSteps, parseTarget } from './limits.js';
import type { Admission, InferenceService, ServiceLimits, ServiceRequest, ServiceResult, ServiceTarget } from './types.js';

export type * from './types.js';
export { checkElementCount, DEFAULT_LIMITS, DEFAULT_IG_STEPS, OFF_LOOP_JSON_BYTES, parseRequestJson } from './limits.js';

export interface ServiceOptions {
  /** `onLoaded`, when given, lets the service build each version's handler at registration instead of on first use. */
  registry: Pick<Registry, 'resolve'> & Partial<Pick<Registry, 'onLoaded'>>;
  metrics: ServerMetrics;
  limits: ServiceLimits;
}

/** Per version: its handler (chosen once) and the slots taken now. */
interface VersionState {
  handler: ModelHandler;
  admitted: number;
}

/** No single request may hold the event loop longer than this between two yields (design: ≲ 20 ms per request). */
const SLICE_MS = 4;

export function createInferenceService(options: ServiceOptions): InferenceService {
  const { registry, metrics, limits } = options;
  // Keyed by the version object: a re-registered version gets fresh state; an unregistered one is collected.
  const states = new WeakMap<ModelVersion, VersionState>();
  // The handler is chosen at registration (a registry without the hook, in unit tests, gets it on first use).
  registry.onLoaded?.((mv) => void stateOf(mv));

  function stateOf(mv: ModelVersion): VersionState {
    let s = states.get(mv);
    if (!s) {
      const handler = createModelHandler({
        name: mv.spec.name, handler: mv.spec.handler, labels: mv.spec.labels, inputs: mv.spec.inputs, outputs: mv.spec.outputs,
        argumentNames: mv.info.inputs, imageInput: mv.imageInput,
      });
      states.set(mv, (s = { handler, admitted: 0 }));
    }
    return s;
  }

  /**
   * Slots of a version: its job queue plus what its workers run at once. A refused request has cost a map lookup
   * and this comparison, nothing else.
   */
  function capacity(mv: ModelVersion): number {
    return mv.settings.jobQueueSize + mv.workers * mv.settings.batchSize;
  }

  const service: InferenceService = {
    limits,

    resolve(model, version) {
      return registry.resolve(model, version);
    },

    admit(target) {
      const mv = registry.resolve(target.model, target.version);
      const state = stateOf(mv);
      const { name, version } = mv.spec;
      if (mv.workers < 1) throw new ServiceUnavailableError(`No worker is available for model ${name} version ${version}`);
      if (state.admitted >= capacity(mv)) {
        throw new ServiceUnavailableError(`Model ${name} version ${version} has too many pending requests (job_queue_size ${mv.settings.jobQueueSize})`);
      }
      state.admitted++;
      const admittedAt = Date.now();
      let released = false;
      let running = false;
      const release = () => {
        if (released) return;
        released = true;
        state.admitted--;
      };
      return {
        modelVersion: mv,
        release() {
          if (!running) release();
        },
        async run(request) {
          if (released) throw new Error('Admission already released');
          running = true;
          try {
            // The version's responseTimeout bounds every request; a client's own deadline may be sooner.
            const deadline = Math.min(target.deadline ?? Infinity, admittedAt + mv.settings.responseTimeout * 1000);
            return await runRequest(mv, state.handler, request, target, deadline, admittedAt);
          } finally {
            running = false;
            release();
          }
        },
      } satisfies Admission;
    },

    async infer(target, request) {
      const admission = service.admit(target);
      try {
        return await admission.run(request);
      } finally {
        admission.release();
      }
    },

    metadata(mv) {
      return stateOf(mv).handler.metadata();
    },

    admitted(mv) {
      return states.get(mv)?.admitted ?? 0;
    },
  };

  async function timed<T>(mv: ModelVersion, stage: Stage, work: () => Promise<T> | T): Promise<T> {
    const start = performance.now();
    try {
      return await work();
    } finally {
      metrics.stage(mv.spec.name, mv.spec.version, stage, performance.now() - start);
    }
  }

  async function runRequest(
    mv: ModelVersion, handler: ModelHandler, request: ServiceRequest, target: ServiceTarget, deadline: number, admittedAt: number,
  ): Promise<ServiceResult> {
    // Aborted by the first failing example, the deadline or the client: the other examples stop being decoded and
    // their queued jobs are dropped.
    const controller = new AbortController();
    const signal = controller.signal;
    const onClientAbort = () => controller.abort(new ClientClosedError());
    if (target.signal?.aborted) throw new ClientClosedError();
    target.signal?.addEventListener('abort', onClientAbort, { once: true });
    const timer = setTimeout(() => controller.abort(new RequestTimeoutError(deadline - admittedAt)), Math.max(0, deadline - Date.now()));
    try {
      const ctx: DecodeContext = {
        dtype: request.dtype,
        shape: request.shape,
        limits: {
          maxImagePixels: limits.maxImagePixels, maxJsonDepth: limits.maxJsonDepth, maxElements: limits.maxRequestElements,
          allowNonFinite: mv.settings.allowNonFinite ?? false, offLoopJsonBytes: limits.offLoopJsonBytes ?? OFF_LOOP_JSON_BYTES,
        },
      };
      const { input } = request;
      // Counted before anything is decoded; the codec may have counted already (same check, same message).
      if (input.kind === 'parts') checkElementCount(input.parts.length, 'parts', limits.maxRequestElements);
      else if (input.kind === 'instances') checkElementCount(input.instances.length, 'instances', limits.maxRequestElements);
      else checkElementCount(input.inputs.reduce((n, i) => n + (i.bytes?.length ?? 0), 0), 'BYTES elements', limits.maxRequestElements);
      const examples =
        input.kind === 'parts' ? handler.partExamples(input.parts, ctx)
          : input.kind === 'instances' ? handler.instanceExamples(input.instances, ctx)
            : handler.tensorExamples(input.inputs, ctx);
      checkElementCount(examples.length, 'examples', limits.maxRequestElements);
      if (examples.length === 0) throw new BadRequestError('Missing input: the request holds no example');
      const explain = request.explain;
      const steps = explain ? parseSteps(explain.steps, limits) : 0;
      if (explain?.heatmap && (!handler.heatmap || input.kind === 'tensors')) {
        throw new BadRequestError(`A heatmap needs an image model's explanation: model ${mv.spec.name} uses the ${handler.name} handler; ask for JSON attributions (no ?format=png, no Accept: image/png)`);
      }
      // timeoutMs: the limit the 504 names, whichever timer (the service's or the batcher's) fires first.
      const options = { signal, deadline, timeoutMs: deadline - admittedAt };

      const perExample = async (example: Example, index: number): Promise<unknown> => {
        // Announced while it is decoded: a worker that frees up meanwhile may wait for it (bounded by
        // maxBatchDelay) to run it in one batch with its neighbours; withdrawn if decoding fails.
        const arrival = explain ? undefined : mv.batcher.expect();
        let args: Tensor[];
        try {
          args = await timed(mv, 'preprocess', () => example.decode());
          signal.throwIfAborted();
        } catch (err) {
          arrival?.cancel();
          throw err;
        }
        if (!explain) {
          let out: OutputTree;
          try {
            out = await mv.batcher.infer(args, { ...options, arrival });
          } finally {
            arrival?.cancel(); // a no-op once the batcher took it; withdraws it if infer threw first (bad args)
          }
          return input.kind === 'tensors' ? out : timed(mv, 'postprocess', () => handler.row(out, example));
        }
        const targets = targetsFor(explain.target, index, args[0]?.shape[0] ?? 1);
        const highest = targets ? Math.max(...targets) : 0;
        if (highest > 0) {
          // One forward gives the class count that bounds an explicit target, for a message naming the range.
          const classes = classCount(await mv.batcher.infer(args, options));
          if (classes !== undefined && highest >= classes) {
            throw new BadRequestError(`target ${highest} is out of range: the model has ${classes} classes (0..${classes - 1})`);
          }
        }
        // No target: the native IG takes each example's predicted class from its own forward on x.
        const result = await mv.batcher.explain(args, targets ? { target: targets, steps } : { steps }, options);
        if (explain.heatmap && handler.heatmap) {
          const heatmap = explain.heatmap;
          return timed(mv, 'postprocess', () => handler.heatmap!(args, result.attributions, heatmap));
        }
        return input.kind === 'tensors' ? result : timed(mv, 'postprocess', () => new TensorJson(result.attributions, 1));
      };

      const results = await forEachFairly(examples, windowOf(mv, examples.length), controller, perExample);
      if (input.kind !== 'tensors') return { kind: 'rows', rows: results };
      return timed(mv, 'postprocess', () => {
        if (!explain) return { kind: 'tensors', outputs: handler.namedOutputs(results as OutputTree[], input.inputs) };
        const igs = results as IgResult[];
        const attributions = igs.length === 1 ? igs[0].attributions : concatRows(igs.map((r) => r.attributions));
        const delta = igs.flatMap((r) => r.delta);
        return {
          kind: 'tensors',
          outputs: [
            { name: 'attributions', datatype: v2Name(attributions), shape: attributions.shape, tensor: attributions },
            { name: 'delta', datatype: 'FP64', shape: [delta.length], tensor: { data: Float64Array.from(delta), shape: [delta.length], dtype: 'float64' } },
          ],
        };
      });
    } catch (err) {
      // The reason of the first abort wins: the failing example's own error, the timeout, or the client leaving.
      if (signal.aborted && signal.reason instanceof TorchdError) throw signal.reason;
      throw err;
    } finally {
      clearTimeout(timer);
      target.signal?.removeEventListener('abort', onClientAbort);
    }
  }

  return service;
}

function v2Name(t: Tensor): NumericDatatype {
  return DTYPE_TO_V2[t.dtype];
}

/**
 * Examples in flight at once for one request: enough to fill every worker's batch twice (so batching is not
 * starved), never more than the job queue holds.
 */
function windowOf(mv: ModelVersion, examples: number): number {
  const wanted = Math.max(2, 2 * mv.settings.batchSize * Math.max(1, mv.workers));
  return Math.max(1, Math.min(examples, wanted, mv.settings.jobQueueSize));
}

/**
 * Runs `work` over `items`, at most `window` at a time, in order of start; yields to the event loop whenever this
 * request has held it for SLICE_MS, so a request of many elements never blocks the others. The first failure aborts
 * `controller` (nothing new starts; queued jobs are dropped) and is rethrown once every started item has settled.
 */
async function forEachFairly<T, R>(items: T[], window: number, controller: AbortController, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  const signal = controller.signal;
  let next = 0;
  let sliceStart = performance.now();
  const lane = async () => {
    while (next < items.length && !signal.aborted) {
      if (performance.now() - sliceStart > SLICE_MS) {
        await yieldToLoop();
        sliceStart = performance.now();
        // Another lane may have taken the last item meanwhile.
        if (signal.aborted || next >= items.length) break;
      }
      const i = next++;
      try {
        results[i] = await work(items[i], i);
      } catch (err) {
        if (!signal.aborted) controller.abort(err);
        break;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, items.length) }, lane));
  if (signal.aborted) throw signal.reason;
  return results;
}

/** One example's target list (one per row), or undefined for "the predicted class". Throws 400 for a bad value. */
function targetsFor(given: unknown, index: number, rows: number): number[] | undefined {
  if (given === undefined || given === null || given === '') return undefined;
  if (!Array.isArray(given)) {
    const t = parseTarget(given);
    return t === undefined ? undefined : Array<number>(rows).fill(t);
  }
  // Every example but a lone one has one row: a list as long as the example's rows is that example's, else the
  // example's slice of it (the list then holds one target per example of the request).
  const list = given.length === rows ? given : given.slice(index, index + rows);
  // A v1 instance without its own target (and none in the query): the predicted class.
  if (list.length > 0 && list.every((v) => v === undefined || v === null || v === '')) return undefined;
  if (list.length !== rows) throw new BadRequestError(`target has ${given.length} entries for ${rows} example rows`);
  return list.map((v) => {
    const t = parseTarget(v);
    if (t === undefined) throw new BadRequestError(`target must be a non-negative integer class index, got ${JSON.stringify(v)}`);
    return t;
  });
}

/** Classes of a classifier's output (the last dimension of its first tensor), when it has one. */
function classCount(out: OutputTree): number | undefined {
  let node: OutputTree = out;
  while (node !== null && typeof node === 'object' && !ArrayBuffer.isView((node as Tensor).data)) {
    const values: OutputTree[] = Array.isArray(node) ? node : Object.values(node as Record<string, OutputTree>);
    if (values.length === 0) return undefined;
    node = values[0];
  }
  const t = node as Tensor | null;
  return t && typeof t === 'object' && t.shape.length > 0 ? t.shape[t.shape.length - 1] : undefined;
}
