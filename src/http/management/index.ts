// The management listener (TorchServe's management API) as an Express app; src/server.ts listens.
// Routes are thin: read the query values, then call the shared management operations (src/management).
import express, { type Request, type RequestHandler, type Response } from 'express';
import { BadRequestError, MethodNotAllowedError } from '../../errors.js';
import {
  checkTarget,
  describeModel,
  listModels,
  type ManagementResult,
  registerModel,
  scaleWorkers,
  setDefaultVersion,
  unregisterModel,
} from '../../management/operations.js';
import { errorMiddleware, notFound, requestId } from '../errors.js';
import { sendJson } from '../respond.js';
import type { AppDeps } from '../types.js';
import { checkName } from '../../store/names.js';
import { serverVersion } from '../../version.js';
import { buildManagementApiDescription, type ManagementApiDocument } from './api-description.js';


export interface ManagementAppOptions {
  /** Token check (src/http/auth.ts requireToken with the management key) for every route. */
  authenticate?: RequestHandler;
}

function one(req: Request, key: string): string | undefined {
  const v = req.query[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new BadRequestError(`Query parameter ${key} must be given once`);
  return v;
}

function intParam(req: Request, key: string, min = 0): number | undefined {
  const v = one(req, key);
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d+$/.test(v) || Number(v) < min) throw new BadRequestError(`Query parameter ${key} must be an integer >= ${min}, got "${v}"`);
  return Number(v);
}

function boolParam(req: Request, key: string, fallback: boolean): boolean {
  const v = one(req, key);
  if (v === undefined || v === '') return fallback;
  if (v !== 'true' && v !== 'false') throw new BadRequestError(`Query parameter ${key} must be true or false, got "${v}"`);
  return v === 'true';
}

/** The management API app (never listens). */
export function createManagementApp(deps: AppDeps, options: ManagementAppOptions = {}): express.Express {
  const { config } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');
  let description: ManagementApiDocument | undefined;

  app.use(requestId);
  if (options.authenticate) app.use(options.authenticate);
  const router = express.Router({ strict: false });

  router.options('/', (_req, res) => {
    description ??= buildManagementApiDescription(serverVersion);
    sendJson(res, 200, description);
  });

  const send = (res: Response, r: ManagementResult) => sendJson(res, r.status, r.body);

  router.post('/models', async (req, res) => {
    // Checked in this order so REST's first reported problem stays what it always was.
    const url = one(req, 'url');
    if (!url) throw new BadRequestError('Parameter url is required.');
    const modelName = one(req, 'model_name');
    if (modelName !== undefined) checkName(modelName, 'model name');
    send(res, await registerModel(deps, {
      url,
      modelName,
      synchronous: boolParam(req, 'synchronous', true),
      batchSize: intParam(req, 'batch_size', 1),
      maxBatchDelay: intParam(req, 'max_batch_delay', 0),
      initialWorkers: intParam(req, 'initial_workers', 0),
      responseTimeout: intParam(req, 'response_timeout', 1),
    }));
  });

  router.get('/models', (req, res) => {
    send(res, listModels(deps, { limit: intParam(req, 'limit', 0), nextPageToken: intParam(req, 'next_page_token', 0) }));
  });

  const target = (req: Request) => ({ name: req.params.model_name as string, version: req.params.model_version as string | undefined });

  const describeRoute = (req: Request, res: Response) => send(res, describeModel(deps, target(req)));
  router.get('/models/:model_name', describeRoute);
  router.get('/models/:model_name/:model_version', describeRoute);

  const scaleRoute = async (req: Request, res: Response) => {
    const { name, version } = target(req);
    // The model is checked (400 bad name, 404 unknown) before the query values, as it always was.
    checkTarget(deps.registry, name, version);
    send(res, await scaleWorkers(deps, {
      name,
      version,
      minWorker: intParam(req, 'min_worker', 0),
      maxWorker: intParam(req, 'max_worker', 0),
      synchronous: boolParam(req, 'synchronous', false),
    }));
  };
  router.put('/models/:model_name', scaleRoute);
  router.put('/models/:model_name/:model_version', scaleRoute);

  router.put('/models/:model_name/:model_version/set-default', (req, res) => {
    const { name, version } = target(req);
    send(res, setDefaultVersion(deps, { name, version: version! }));
  });

  const unregisterRoute = async (req: Request, res: Response) => send(res, await unregisterModel(deps, target(req)));
  router.delete('/models/:model_name', unregisterRoute);
  router.delete('/models/:model_name/:model_version', unregisterRoute);

  // A known path with another method is 405, not 404.
  const methods: Record<string, string[]> = {
    '/': ['OPTIONS'],
    '/models': ['GET', 'POST'],
    '/models/:model_name': ['GET', 'PUT', 'DELETE'],
    '/models/:model_name/:model_version': ['GET', 'PUT', 'DELETE'],
    '/models/:model_name/:model_version/set-default': ['PUT'],
  };
  for (const [path, allowed] of Object.entries(methods)) {
    router.all(path, (req, res, next) => {
      res.setHeader('Allow', allowed.join(', '));
      next(new MethodNotAllowedError(`Method ${req.method} is not allowed on ${req.path}; allowed: ${allowed.join(', ')}`));
    });
  }

  app.use(router);
  app.use(notFound);
  app.use(errorMiddleware(config.maxRequestSize));
  return app;
}
