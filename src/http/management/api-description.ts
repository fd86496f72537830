// OpenAPI 3.0.1 description of the management listener, generated from zod schemas so the shapes
// documented are the shapes the routes send.
import { extendZodWithOpenApi, OpenAPIRegistry, OpenApiGeneratorV3, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { ErrorBody } from '../api-description.js';

extendZodWithOpenApi(z);


const Status = z.object({ status: z.string() }).openapi('Status', { example: { status: 'Model "mnist" Version: 1.0 registered with 1 initial workers' } });

const ModelList = z
  .object({
    models: z.array(z.object({ modelName: z.string(), modelUrl: z.string() })),
    nextPageToken: z.string().optional().openapi({ description: 'pass as next_page_token for the next page' }),
  })
  .openapi('ModelList');

const Worker = z.object({
  id: z.string(),
  startTime: z.string().openapi({ format: 'date-time' }),
  status: z.enum(['READY', 'STUCK', 'UNLOADING', 'STOPPED']),
  pid: z.number().int(),
  gpu: z.boolean(),
});

const ModelDescription = z
  .object({
    modelName: z.string(),
    modelVersion: z.string(),
    modelUrl: z.string(),
    isDefault: z.boolean(),
    handler: z.string(),
    runtime: z.string(),
    device: z.string(),
    precision: z.string(),
    batchSize: z.number().int(),
    maxBatchDelay: z.number().openapi({ description: 'milliseconds' }),
    responseTimeout: z.number().openapi({ description: 'seconds' }),
    minWorkers: z.number().int(),
    maxWorkers: z.number().int(),
    loadedAtStartup: z.boolean(),
    parameterBytes: z.number().int(),
    optimize: z.boolean().openapi({ description: 'the model config setting (default true)' }),
    forwardModule: z.enum(['optimized', 'original', 'pending']).openapi({
      description: 'the module forward runs: frozen + optimize_for_inference, as saved, or not yet checked (the first request decides)',
    }),
    forwardModuleReason: z.string().optional().openapi({ description: 'why the original serves although optimize is true' }),
    probedImageSize: z.array(z.number().int()).length(2).nullable().optional().openapi({
      description: 'an image model whose handler does not resize and whose config declares no inputs: the [height, width] '
        + 'found at registration by trying square sizes (other sizes are refused from the image header), or null when the '
        + 'model takes several sizes (then max_image_pixels bounds decoding)',
    }),
    workers: z.array(Worker),
    jobQueueStatus: z.object({
      remainingCapacity: z.number().int(),
      pendingRequests: z.number().int(),
      runningRequests: z.number().int(),
      stuckWorkers: z.number().int().openapi({ description: "workers busy past their request's deadline plus a grace (not ready while > 0)" }),
    }),
  })
  .openapi('ModelDescription');

const modelName = z.string().openapi({ param: { name: 'model_name', in: 'path' }, example: 'mnist' });
const modelVersion = z.string().openapi({ param: { name: 'model_version', in: 'path' }, example: '1.0' });
const int = (description: string) => z.string().regex(/^\d+$/).optional().openapi({ description });
const bool = (description: string) => z.enum(['true', 'false']).optional().openapi({ description });

const json = (schema: z.ZodType, description: string) => ({ description, content: { 'application/json': { schema } } });
const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [String(c), json(ErrorBody, ({ 400: 'Bad request', 403: 'Forbidden', 404: 'Not found', 409: 'Conflict', 500: 'Internal error' } as Record<number, string>)[c] ?? 'Error')]));

const routes: RouteConfig[] = [
  {
    method: 'options', path: '/', operationId: 'apiDescription', summary: 'This OpenAPI document',
    responses: { 200: { description: 'OpenAPI 3.0.1 document', content: { 'application/json': { schema: z.object({}).passthrough() } } } },
  },
  {
    method: 'post', path: '/models', operationId: 'registerModel', summary: 'Register a model archive or directory from the model store',
    request: {
      query: z.object({
        url: z.string().openapi({ description: 'archive file or directory, relative to the model store (or a file:// URL permitted by allowed_urls)' }),
        model_name: z.string().optional().openapi({ description: "overrides the MANIFEST's modelName" }),
        batch_size: int('maximum dynamic batch size'),
        max_batch_delay: int('milliseconds a partial batch may wait'),
        initial_workers: int('workers to start'),
        response_timeout: int('seconds'),
        synchronous: bool('wait for the model to load (default true); false answers 202 at once'),
      }),
    },
    responses: { 200: json(Status, 'Registered'), 202: json(Status, 'Loading in the background'), ...errors(400, 404, 409, 500) },
  },
  {
    method: 'get', path: '/models', operationId: 'listModels', summary: 'List registered models',
    request: { query: z.object({ limit: int('page size, 1..100 (default 100)'), next_page_token: int('from a previous page') }) },
    responses: { 200: json(ModelList, 'Models, sorted by name'), ...errors(400) },
  },
  {
    method: 'get', path: '/models/{model_name}', operationId: 'describeModel', summary: 'Describe the default version',
    request: { params: z.object({ model_name: modelName }) },
    responses: { 200: json(z.array(ModelDescription), 'One description'), ...errors(400, 404) },
  },
  {
    method: 'get', path: '/models/{model_name}/{model_version}', operationId: 'describeModelVersion',
    summary: 'Describe one version, or every version with `all`',
    request: { params: z.object({ model_name: modelName, model_version: modelVersion }) },
    responses: { 200: json(z.array(ModelDescription), 'Descriptions'), ...errors(400, 404) },
  },
  ...(['', '/{model_version}'] as const).map((suffix): RouteConfig => ({
    method: 'put', path: `/models/{model_name}${suffix}`, operationId: suffix ? 'scaleModelVersion' : 'scaleModel',
    summary: `Scale the workers of ${suffix ? 'one version' : 'the default version'} (threads over one copy of the weights)`,
    request: {
      params: suffix ? z.object({ model_name: modelName, model_version: modelVersion }) : z.object({ model_name: modelName }),
      query: z.object({ min_worker: int('default 1'), max_worker: int('default min_worker'), synchronous: bool('200 when true, 202 otherwise') }),
    },
    responses: { 200: json(Status, 'Scaled'), 202: json(Status, 'Scaled (asynchronous form)'), ...errors(400, 404) },
  })),
  {
    method: 'put', path: '/models/{model_name}/{model_version}/set-default', operationId: 'setDefault', summary: 'Make a version the default',
    request: { params: z.object({ model_name: modelName, model_version: modelVersion }) },
    responses: { 200: json(Status, 'Default set'), ...errors(400, 404) },
  },
  ...(['', '/{model_version}'] as const).map((suffix): RouteConfig => ({
    method: 'delete', path: `/models/{model_name}${suffix}`, operationId: suffix ? 'unregisterModelVersion' : 'unregisterModel',
    summary: `Unregister ${suffix ? 'one version' : 'the default version'}; in-flight requests finish first`,
    request: { params: suffix ? z.object({ model_name: modelName, model_version: modelVersion }) : z.object({ model_name: modelName }) },
    responses: { 200: json(Status, 'Unregistered'), ...errors(400, 403, 404) },
  })),
];

export type ManagementApiDocument = ReturnType<OpenApiGeneratorV3['generateDocument']>;

export function buildManagementApiDescription(version: string): ManagementApiDocument {
  const registry = new OpenAPIRegistry();
  for (const r of routes) registry.registerPath(r);
  return new OpenApiGeneratorV3(registry.definitions).generateDocument({
    openapi: '3.0.1',
    info: { title: 'torchd management API', version, description: "TorchServe's management API: register, list, describe, scale, set-default, unregister." },
  });
}
