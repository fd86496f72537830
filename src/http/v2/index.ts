// KServe v2 / Open Inference Protocol routes (mounted at /v2 by the inference app). The router parses its
// own bodies as raw bytes, so binary tensors are never touched by a JSON parser.
import express, { type Request, type Response } from 'express';
import { BadRequestError, MethodNotAllowedError } from '../../errors.js';
import type { ModelVersion } from '../../engine/types.js';
import { plainJson } from '../../bounded-json.js';
import { OFF_LOOP_JSON_BYTES, parseRequestJson, type ServiceRequest } from '../../service/index.js';
import { serverVersion } from '../../version.js';
import { admissionOf, admit } from '../admission.js';
import { sendJson, writeBody } from '../respond.js';
import * as health from '../health.js';
import type { AppDeps } from '../types.js';
import { HEADER_LENGTH, type DecodedRequest, decodeInferRequest, encodeInferResponse, type NamedOutput } from './codec.js';

const PLATFORM = 'pytorch_torchscript';

export { serverVersion };

/** KServe v2 model metadata (REST and gRPC ModelMetadata): inputs and outputs from the version's handler. */
export function modelMetadata(deps: Pick<AppDeps, 'registry' | 'service'>, mv: ModelVersion): Record<string, unknown> {
  const { inputs, outputs } = deps.service.metadata(mv);
  const strip = (m: { name: string; datatype: string; shape: number[] }) => ({ name: m.name, datatype: m.datatype, shape: m.shape });
  return {
    name: mv.spec.name,
    versions: deps.registry.versions(mv.spec.name).map((v) => v.spec.version),
    platform: PLATFORM,
    inputs: inputs.map(strip),
    outputs: outputs.map(strip),
    // Not in the protocol's metadata: which module forward runs (see the describe API's forwardModule).
    parameters: { forward_module: mv.optimization.serving },
  };
}

/** The outputs a request named (all when it named none), and whether each goes back binary. */
export function selectOutputs(request: DecodedRequest, outputs: NamedOutput[]): { outputs: NamedOutput[]; binary: (name: string) => boolean } {
  if (!request.outputs) return { outputs, binary: () => request.binaryOutputs };
  const byName = new Map(outputs.map((o) => [o.name, o]));
  const chosen = request.outputs.map((r) => {
    const o = byName.get(r.name);
    if (!o) throw new BadRequestError(`Requested output "${r.name}" is not an output of the model; outputs: ${outputs.map((x) => x.name).join(', ')}`);
    return o;
  });
  const flags = new Map(request.outputs.map((r) => [r.name, r.binary || request.binaryOutputs]));
  return { outputs: chosen, binary: (name) => flags.get(name) ?? false };
}

async function sendInferResponse(res: Response, mv: ModelVersion, request: DecodedRequest, outputs: NamedOutput[]): Promise<void> {
  const selected = selectOutputs(request, outputs);
  const head: Record<string, unknown> = {};
  if (request.id !== undefined) head.id = request.id;
  head.model_name = mv.spec.name;
  head.model_version = mv.spec.version;
  const encoded = await encodeInferResponse(head, selected.outputs, selected.binary);
  if (res.headersSent || res.destroyed) return;
  res.status(200);
  res.setHeader('Content-Type', encoded.contentType);
  if (encoded.headerLength !== undefined) res.setHeader('Inference-Header-Content-Length', String(encoded.headerLength));
  res.setHeader('Content-Length', String(encoded.chunks.reduce((a, c) => a + c.length, 0)));
  // Written piece by piece: binary outputs go out from the tensors' own memory, never concatenated.
  await writeBody(res, encoded.chunks);
}

/** `parameters.n_steps` / `parameters.target`: non-negative integers (target may be a list, one per example). */
function numberParam(params: Record<string, unknown>, key: string): number | number[] | undefined {
  const v = plainJson(params[key]); // a long target list of a large body arrives packed
  if (v === undefined) return undefined;
  if (Number.isInteger(v) && (v as number) >= 0) return v as number;
  if (Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0)) return v as number[];
  throw new BadRequestError(`parameters.${key} must be a non-negative integer (or a list of them), got ${JSON.stringify(v)}`);
}

/** The service request of a decoded v2 body: its inputs as named tensors; `explain` reads n_steps and target. */
export function v2ServiceRequest(request: DecodedRequest, explain: boolean): ServiceRequest {
  const out: ServiceRequest = { input: { kind: 'tensors', inputs: request.inputs } };
  if (explain) {
    const steps = numberParam(request.parameters, 'n_steps');
    if (Array.isArray(steps) || steps === 0) throw new BadRequestError('parameters.n_steps must be a positive integer');
    out.explain = { steps, target: numberParam(request.parameters, 'target') };
  }
  return out;
}

/** The /v2 router: server and model metadata, health, infer and explain (JSON or binary tensors). */
export function v2Router(deps: AppDeps): express.Router {
  const { registry, config, service } = deps;
  const router = express.Router({ strict: false });
  const rawBody = express.raw({ type: () => true, limit: config.maxRequestSize });

  const resolve = (req: Request, res: Response): ModelVersion => {
    const mv = service.resolve(req.params.model_name as string, req.params.model_version as string | undefined);
    res.locals.model = mv.spec.name;
    res.locals.version = mv.spec.version;
    return mv;
  };
  const bodyOf = async (req: Request): Promise<DecodedRequest> => {
    const body: unknown = req.body;
    const header = req.get(HEADER_LENGTH);
    const limits = { maxElements: service.limits.maxRequestElements, maxJsonDepth: service.limits.maxJsonDepth };
    if (Buffer.isBuffer(body) && header === undefined && body.length > 0) {
      // A pure JSON request: a large one is parsed off the event loop (same bounds and messages as the codec's).
      const json = await parseRequestJson(body, service.limits, 'JSON inference header');
      return decodeInferRequest(json as Record<string, unknown>, undefined, limits);
    }
    if (Buffer.isBuffer(body) && header !== undefined && /^\s*\d+\s*$/.test(header)) {
      // A binary request whose JSON header is large: the header is parsed off the event loop too.
      const n = Number(header);
      if (n > 0 && n <= body.length && n >= (service.limits.offLoopJsonBytes ?? OFF_LOOP_JSON_BYTES)) {
        const value = await parseRequestJson(body.subarray(0, n), service.limits, 'JSON inference header');
        return decodeInferRequest(body, header, limits, { value });
      }
    }
    if (Buffer.isBuffer(body)) return decodeInferRequest(body, header, limits);
    // Parsed by an upstream JSON parser already (no binary part possible then), or no body at all.
    if (body && typeof body === 'object') return decodeInferRequest(body as Record<string, unknown>, undefined, limits);
    return decodeInferRequest(Buffer.alloc(0), header, limits);
  };

  router.get('/', (_req, res) => sendJson(res, 200, { name: 'torchd', version: serverVersion, extensions: ['binary_tensor_data'] }));
  router.get('/health/live', health.v2Live(deps));
  router.get('/health/ready', health.v2Ready(deps));

  const metadata = (req: Request, res: Response) => sendJson(res, 200, modelMetadata(deps, resolve(req, res)));
  const ready = (req: Request, res: Response) => {
    const mv = resolve(req, res);
    sendJson(res, mv.ready ? 200 : 503, { name: mv.spec.name, ready: mv.ready });
  };

  /** infer and explain: admission (before the body is read), decode, the service, encode. */
  const run = (explain: boolean) => async (req: Request, res: Response) => {
    const admission = admissionOf(res);
    const request = await bodyOf(req);
    const result = await admission.run(v2ServiceRequest(request, explain));
    await sendInferResponse(res, admission.modelVersion, request, result.kind === 'tensors' ? result.outputs : []);
  };

  for (const base of ['/models/:model_name', '/models/:model_name/versions/:model_version']) {
    router.get(base, metadata);
    router.get(`${base}/ready`, ready);
    // Resolve the model before reading the body, so an unknown model is a 404 without buffering it.
    router.post(`${base}/infer`, admit(service, 'kserve-v2'), rawBody, run(false));
    router.post(`${base}/explain`, admit(service, 'kserve-v2'), rawBody, run(true));
  }

  const allowed: Record<string, string> = {
    '/': 'GET',
    '/health/live': 'GET',
    '/health/ready': 'GET',
  };
  for (const base of ['/models/:model_name', '/models/:model_name/versions/:model_version']) {
    allowed[base] = 'GET';
    allowed[`${base}/ready`] = 'GET';
    allowed[`${base}/infer`] = 'POST';
    allowed[`${base}/explain`] = 'POST';
  }
  for (const [path, methods] of Object.entries(allowed)) {
    router.all(path, (req, res, next) => {
      res.setHeader('Allow', methods);
      next(new MethodNotAllowedError(`Method ${req.method} is not allowed on ${req.baseUrl}${req.path}; allowed: ${methods}`));
    });
  }
  return router;
}
