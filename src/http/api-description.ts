// The inference listener's route table. The Express app mounts its handlers from these definitions
// and `OPTIONS /` serves the OpenAPI 3.0.1 document generated from the same definitions, so the
// description cannot drift from what is served.
import {
  extendZodWithOpenApi,
  OpenAPIRegistry,
  OpenApiGeneratorV3,
  type RouteConfig,
  type ZodContentObject,
} from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

extendZodWithOpenApi(z);

/** A route as documented; `operationId` keys the Express handler that serves it. */
export type RouteDefinition = RouteConfig & { operationId: string };

/** The `{code, type, message}` body of every error, on every listener. */
export const ErrorBody = z
  .object({
    code: z.number().int().openapi({ example: 404 }),
    type: z.string().openapi({ example: 'ModelNotFoundException' }),
    message: z.string().openapi({ example: 'Model not found: mnist' }),
  })
  .openapi('Error');
const Ping = z.object({ status: z.enum(['Healthy', 'Unhealthy']) }).openapi('Ping');
const Prediction = z
  .any()
  .openapi('Prediction', {
    description:
      'The handler output: image_classifier top-k `{label: probability}` in descending order, a bare class index ' +
      '(argmax), a list of probabilities/logits, or the tensor handler\'s output tree as JSON. With several ' +
      'one-argument inputs: a JSON array with one result per input, in order.',
    example: { tabby: 0.4086, tiger_cat: 0.3506, Egyptian_cat: 0.1261, lynx: 0.0233, bucket: 0.0119 },
  });
const Attributions = z
  .array(z.any())
  .openapi('Attributions', {
    description: 'Integrated-gradients attributions, nested arrays with the input\'s shape without the batch dimension',
  });
const KServeV1Instance = z.union([
  z.object({ data: z.string().openapi({ description: 'base64 image' }), target: z.number().int().optional() }).openapi({ additionalProperties: true }),
  z.array(z.any()).openapi({ description: 'a nested array, for tensor models' }),
]);
const KServeV1Request = z.object({ instances: z.array(KServeV1Instance) }).openapi('KServeV1Request');
const KServeV1Predictions = z.object({ predictions: z.array(z.any()) }).openapi('KServeV1Predictions');
const KServeV1Explanations = z.object({ explanations: z.array(z.any()) }).openapi('KServeV1Explanations');
const KServeV1Models = z.object({ models: z.array(z.string()) }).openapi('KServeV1Models');
const KServeV1Ready = z.object({ name: z.string(), ready: z.boolean() }).openapi('KServeV1ModelReady');
const V2Tensor = z
  .object({
    name: z.string(),
    shape: z.array(z.number().int()),
    datatype: z.enum(['BOOL', 'UINT8', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES']),
    data: z.array(z.any()).optional(),
    parameters: z.record(z.string(), z.any()).optional(),
  })
  .openapi('V2Tensor');
const V2InferRequest = z
  .object({
    id: z.string().optional(),
    inputs: z.array(V2Tensor),
    outputs: z.array(z.object({ name: z.string(), parameters: z.record(z.string(), z.any()).optional() })).optional(),
    parameters: z.record(z.string(), z.any()).optional(),
  })
  .openapi('V2InferRequest');
const V2InferResponse = z
  .object({ id: z.string().optional(), model_name: z.string(), model_version: z.string().optional(), outputs: z.array(V2Tensor) })
  .openapi('V2InferResponse');
const V2ServerMetadata = z
  .object({ name: z.string(), version: z.string(), extensions: z.array(z.string()) })
  .openapi('V2ServerMetadata');
const V2ModelMetadata = z
  .object({
    name: z.string(),
    versions: z.array(z.string()),
    platform: z.string().openapi({ example: 'pytorch_torchscript' }),
    inputs: z.array(z.object({ name: z.string(), datatype: z.string(), shape: z.array(z.number().int()) })),
    outputs: z.array(z.object({ name: z.string(), datatype: z.string(), shape: z.array(z.number().int()) })),
    parameters: z.object({
      forward_module: z.enum(['optimized', 'original', 'pending']).openapi({ description: 'torchd extension: the module forward runs' }),
    }),
  })
  .openapi('V2ModelMetadata');
const V2Ready = z.object({ ready: z.boolean() }).openapi('V2Ready');

const modelParam = z.string().openapi({ param: { name: 'model_name', in: 'path' }, example: 'mnist' });
const versionParam = z.string().openapi({ param: { name: 'model_version', in: 'path' }, example: '1.0' });
const ModelParams = z.object({ model_name: modelParam });
const ModelVersionParams = z.object({ model_name: modelParam, model_version: versionParam });
const PredictQuery = z.object({
  shape: z.string().optional().openapi({ description: 'tensor handler, raw bytes: comma-separated shape, e.g. 1,3,224,224' }),
  dtype: z.string().optional().openapi({ description: 'tensor handler, raw bytes: element type, e.g. float32' }),
});
const ExplainQuery = PredictQuery.extend({
  n_steps: z.string().optional().openapi({ description: 'integration steps (default 15)' }),
  target: z.string().optional().openapi({ description: 'class to attribute (default: the predicted class)' }),
  format: z.enum(['json', 'png']).optional().openapi({ description: 'png: a heatmap picture per input instead of numbers (also `Accept: image/png`); one input → image/png, several → a JSON list of PNG data URLs' }),
  overlay: z.enum(['true', 'false']).optional().openapi({ description: 'heatmaps only: blend over the preprocessed input (default true) or draw the colour map alone' }),
});
const HeatmapQuery = z.object({
  format: ExplainQuery.shape.format,
  overlay: ExplainQuery.shape.overlay,
});
const png = { 'image/png': { schema: { type: 'string', format: 'binary' } } } as const;

const json = (schema: z.ZodType): ZodContentObject => ({ 'application/json': { schema } });
const binary = { type: 'string', format: 'binary' } as const;
const inputBody = {
  required: true,
  description:
    'The model input: raw bytes (`curl -T FILE` sends PUT with no Content-Type), multipart parts (each part is ' +
    'an input), form fields, JSON (nested arrays, `{data, shape, dtype}`, or `{"data": "<base64>"}`), or text ' +
    '(base64 of an image).',
  content: {
    'application/octet-stream': { schema: binary },
    'image/*': { schema: binary },
    'multipart/form-data': { schema: { type: 'object', properties: { data: binary }, additionalProperties: true } },
    'application/x-www-form-urlencoded': { schema: { type: 'object', additionalProperties: { type: 'string' } } },
    'application/json': { schema: {} },
    'text/plain': { schema: { type: 'string' } },
  },
} as const;
const errors = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((c) => [String(c), { description: ERROR_TEXT[c], content: json(ErrorBody) }]),
  );
const ERROR_TEXT: Record<number, string> = {
  400: 'Bad input: undecodable image, wrong tensor shape/dtype, malformed JSON, missing input',
  404: 'Model or version not found',
  405: 'Method not allowed',
  413: 'Body larger than max_request_size',
  500: 'Unhealthy',
  503: 'Queue full, no ready worker, or the model raised',
  504: 'Response timeout',
  507: 'Out of resources',
};
const inferErrors = errors(400, 404, 413, 503, 504, 507);

function predictionRoutes(kind: 'predictions' | 'explanations'): RouteDefinition[] {
  const routes: RouteDefinition[] = [];
  const explain = kind === 'explanations';
  for (const versioned of [false, true]) {
    for (const method of ['post', 'put'] as const) {
      routes.push({
        method,
        path: versioned ? `/${kind}/{model_name}/{model_version}` : `/${kind}/{model_name}`,
        operationId: `${explain ? 'explain' : 'predict'}${versioned ? 'Version' : ''}${method === 'put' ? 'Put' : ''}`,
        tags: [explain ? 'Explanations' : 'Predictions'],
        summary: explain
          ? `Integrated-gradients attributions from ${versioned ? 'a given version' : 'the default version'} of a model`
          : `Predictions from ${versioned ? 'a given version' : 'the default version'} of a model`,
        request: { params: versioned ? ModelVersionParams : ModelParams, query: explain ? ExplainQuery : PredictQuery, body: inputBody },
        responses: {
          200: explain
            ? { description: 'Attributions (JSON), or a PNG heatmap when asked (`?format=png`, `Accept: image/png`)', content: { ...json(Attributions), ...png } }
            : { description: 'The prediction', content: json(Prediction) },
          ...inferErrors,
        },
      });
    }
  }
  return routes;
}

/** Every route the inference app serves itself (all but /v2). */
export const inferenceRoutes: RouteDefinition[] = [
  {
    method: 'options',
    path: '/',
    operationId: 'apiDescription',
    tags: ['API description'],
    summary: 'This OpenAPI 3.0.1 document (any other method on / is 405)',
    responses: { 200: { description: 'OpenAPI document', content: json(z.object({}).passthrough()) } },
  },
  {
    method: 'get',
    path: '/api-description',
    operationId: 'apiDescriptionGet',
    tags: ['API description'],
    summary: 'This OpenAPI 3.0.1 document',
    responses: { 200: { description: 'OpenAPI document', content: json(z.object({}).passthrough()) } },
  },
  {
    method: 'get',
    path: '/ping',
    operationId: 'ping',
    tags: ['Health'],
    summary: "Healthy when every model's default version has a ready worker",
    responses: {
      200: { description: 'Healthy', content: json(Ping) },
      500: { description: 'Unhealthy', content: json(Ping) },
    },
  },
  ...predictionRoutes('predictions'),
  {
    method: 'options',
    path: '/predictions/{model_name}',
    operationId: 'modelDescription',
    tags: ['API description'],
    summary: 'A small OpenAPI document for one model',
    request: { params: ModelParams },
    responses: { 200: { description: 'OpenAPI document', content: json(z.object({}).passthrough()) }, ...errors(404) },
  },
  ...predictionRoutes('explanations'),
  {
    method: 'post',
    path: '/v1/models/{model_name}:predict',
    operationId: 'kserveV1Predict',
    tags: ['KServe v1'],
    summary: 'KServe v1 predict with the default version',
    request: { params: ModelParams, body: { required: true, content: json(KServeV1Request) } },
    responses: { 200: { description: 'Predictions, one per instance', content: json(KServeV1Predictions) }, ...inferErrors },
  },
  {
    method: 'post',
    path: '/v1/models/{model_name}:explain',
    operationId: 'kserveV1Explain',
    tags: ['KServe v1'],
    summary: 'KServe v1 explain (integrated gradients) with the default version',
    request: { params: ModelParams, query: HeatmapQuery, body: { required: true, content: json(KServeV1Request) } },
    responses: {
      200: { description: 'Attributions, one per instance; with `?format=png` or `Accept: image/png` PNG heatmaps (one instance: image/png; several: {"explanations": [PNG data URLs]})', content: { ...json(KServeV1Explanations), ...png } },
      ...inferErrors,
    },
  },
  {
    method: 'get',
    path: '/v1/models',
    operationId: 'kserveV1List',
    tags: ['KServe v1'],
    summary: 'Names of the registered models',
    responses: { 200: { description: 'Model names', content: json(KServeV1Models) } },
  },
  {
    method: 'get',
    path: '/v1/models/{model_name}',
    operationId: 'kserveV1Ready',
    tags: ['KServe v1'],
    summary: "Readiness of a model's default version",
    request: { params: ModelParams },
    responses: { 200: { description: 'Readiness', content: json(KServeV1Ready) }, ...errors(404) },
  },
];

/** The KServe v2 routes: served by src/http/v2 (mounted at /v2), documented here with the rest. */
export const v2Routes: RouteConfig[] = (() => {
  const routes: RouteConfig[] = [
    { method: 'get', path: '/v2', tags: ['KServe v2'], summary: 'Server metadata', responses: { 200: { description: 'Server metadata', content: json(V2ServerMetadata) } } },
    { method: 'get', path: '/v2/health/live', tags: ['KServe v2'], summary: 'Liveness', responses: { 200: { description: 'Live', content: json(z.object({ live: z.boolean() })) } } },
    { method: 'get', path: '/v2/health/ready', tags: ['KServe v2'], summary: 'Readiness of the server', responses: { 200: { description: 'Ready', content: json(V2Ready) }, 503: { description: 'Not ready', content: json(V2Ready) } } },
  ];
  for (const versioned of [false, true]) {
    const base = versioned ? '/v2/models/{model_name}/versions/{model_version}' : '/v2/models/{model_name}';
    const params = versioned ? ModelVersionParams : ModelParams;
    routes.push(
      { method: 'get', path: base, tags: ['KServe v2'], summary: 'Model metadata', request: { params }, responses: { 200: { description: 'Model metadata', content: json(V2ModelMetadata) }, ...errors(404) } },
      { method: 'get', path: `${base}/ready`, tags: ['KServe v2'], summary: 'Model readiness', request: { params }, responses: { 200: { description: 'Ready', content: json(V2Ready) }, 503: { description: 'Not ready', content: json(V2Ready) }, ...errors(404) } },
      {
        method: 'post',
        path: `${base}/infer`,
        tags: ['KServe v2'],
        summary: 'Inference (Open Inference Protocol; binary tensor extension via Inference-Header-Content-Length)',
        request: { params, body: { required: true, content: { ...json(V2InferRequest), 'application/octet-stream': { schema: binary } } } },
        responses: { 200: { description: 'Outputs', content: json(V2InferResponse) }, ...inferErrors },
      },
      {
        method: 'post',
        path: `${base}/explain`,
        tags: ['KServe v2'],
        summary: 'Integrated-gradients attributions in the v2 envelope',
        request: { params, body: { required: true, content: json(V2InferRequest) } },
        responses: { 200: { description: 'Attributions as outputs', content: json(V2InferResponse) }, ...inferErrors },
      },
    );
  }
  return routes;
})();

export type OpenApiDocument = ReturnType<OpenApiGeneratorV3['generateDocument']>;

/** The OpenAPI 3.0.1 document of the inference listener (built once; it never changes at runtime). */
export function buildApiDescription(version: string): OpenApiDocument {
  const registry = new OpenAPIRegistry();
  for (const r of [...inferenceRoutes, ...v2Routes]) registry.registerPath(r);
  return new OpenApiGeneratorV3(registry.definitions).generateDocument({
    openapi: '3.0.1',
    info: {
      title: 'torchd inference API',
      description: "TorchServe-compatible inference API served by torchd (LibTorch through N-API).",
      version,
    },
  });
}

/** `OPTIONS /predictions/{model}`: the prediction routes of one model and its versions. */
export function buildModelDescription(
  model: string,
  versions: string[],
  defaultVersion: string,
  handler: string,
  serverVersion: string,
): OpenApiDocument {
  const registry = new OpenAPIRegistry();
  const VersionParam = z.object({ model_version: z.enum(versions as [string, ...string[]]).openapi({ param: { name: 'model_version', in: 'path' } }) });
  for (const r of inferenceRoutes.filter((r) => /^\/(predictions|explanations)\//.test(r.path))) {
    const versioned = r.path.includes('{model_version}');
    registry.registerPath({
      ...r,
      operationId: `${model}_${r.operationId}`,
      path: r.path.replace('{model_name}', encodeURIComponent(model)),
      request: { ...r.request, params: versioned ? VersionParam : undefined },
    });
  }
  return new OpenApiGeneratorV3(registry.definitions).generateDocument({
    openapi: '3.0.1',
    info: {
      title: `torchd model ${model}`,
      description: `Handler ${handler}; versions ${versions.join(', ')}; default version ${defaultVersion}.`,
      version: serverVersion,
    },
  });
}
