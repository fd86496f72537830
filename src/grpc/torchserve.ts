// org.pytorch.serve.grpc.inference.InferenceAPIsService: TorchServe's gRPC inference API as a thin codec over the
// inference service, built as REST /predictions builds its request (the `input` map is the request's parts).
import type { ServerDuplexStream, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { BadRequestError } from '../errors.js';
import type { ModelVersion, Registry } from '../engine/types.js';
import { serializeJsonBuffer, type InputPart } from '../handlers/index.js';
import { torchserveBody, torchserveRequest } from '../http/torchserve.js';
import { OFF_LOOP_JSON_NUMBERS } from '../service/limits.js';
import { asTorchdError } from './status.js';
import { answerInOrder, type CallContext, endStream, openCall, type ServiceOptions, statusMessage, unary } from './calls.js';

interface PredictionsRequest {
  model_name: string;
  model_version: string;
  input: Record<string, Buffer>;
  sequence_id?: string;
}

interface PredictionResponse {
  prediction: Buffer;
  sequence_id?: string;
  status?: { code: number; message: string; details: never[] };
}

/** `model_name` + `model_version` ('' = default) → the version; 400 for an empty name, 404 unknown. */
export function resolveModel(registry: Registry, name: string, version: string, ctx: CallContext): ModelVersion {
  if (!name) throw new BadRequestError('Missing model_name');
  const mv = registry.resolve(name, version || undefined);
  ctx.model = mv.spec.name;
  ctx.version = mv.spec.version;
  return mv;
}

/**
 * One map entry as a REST part would arrive: JSON text (first byte `{` or `[`) is JSON, as a multipart
 * part sent with Content-Type application/json; anything else is raw bytes (an image file, a tensor).
 */
function partOf(name: string, data: Buffer): InputPart {
  let i = 0;
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x09)) i++;
  const json = data[i] === 0x7b || data[i] === 0x5b;
  return { name, data, contentType: json ? 'application/json' : undefined };
}

export function torchserveInferenceService(o: ServiceOptions): UntypedServiceImplementation {
  const { registry, config, service } = o.deps;

  const predict = async (req: PredictionsRequest, ctx: CallContext): Promise<PredictionResponse> => {
    const mv = resolveModel(registry, req.model_name, req.model_version, ctx);
    const target = { model: mv.spec.name, version: mv.spec.version, protocol: 'grpc-torchserve', signal: ctx.signal, deadline: ctx.deadline };
    // The slot first: a refused call decodes nothing.
    const admission = service.admit(target);
    let body: unknown;
    try {
      const parts = Object.entries(req.input ?? {}).map(([name, data]) => partOf(name, data));
      body = torchserveBody(await admission.run(torchserveRequest(parts, {}, false)));
    } finally {
      admission.release();
    }
    const response: PredictionResponse = { prediction: await serializeJsonBuffer(body, OFF_LOOP_JSON_NUMBERS) };
    if (req.sequence_id) response.sequence_id = req.sequence_id;
    return response;
  };

  return {
    Ping: unary(o, 'Ping', () => ({ health: JSON.stringify({ status: o.state.ready() ? 'Healthy' : 'Unhealthy' }) })),

    Predictions: unary(o, 'Predictions', predict),

    // One request, the model's responses as a stream: torchd's handlers answer once.
    StreamPredictions(call: ServerWritableStream<PredictionsRequest, PredictionResponse>) {
      const { ctx, refused, finish } = openCall(o, 'StreamPredictions', call);
      const fail = (err: unknown) => {
        const t = asTorchdError(err, config.maxRequestSize);
        finish(t);
        endStream(call, t);
      };
      if (refused) return fail(refused);
      predict(call.request, ctx).then((res) => {
        finish();
        if (!call.cancelled) call.write(res);
        endStream(call);
      }, fail);
    },

    // Bidirectional: every request starts at once (so they batch) and is answered in arrival order; a failed
    // one is answered with `status` set and the stream stays open, as TorchServe does. Each request is one
    // request in the metrics and the log.
    StreamPredictions2(call: ServerDuplexStream<PredictionsRequest, PredictionResponse>) {
      answerInOrder(o, 'StreamPredictions2', call, predict, (err, req) => {
        const failed: PredictionResponse = { prediction: Buffer.alloc(0), status: statusMessage(err, config.maxRequestSize) };
        if (req.sequence_id) failed.sequence_id = req.sequence_id;
        return failed;
      });
    },
  };
}
