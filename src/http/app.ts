// The inference listener as an Express app (it never listens: src/server.ts does). Routes are
// mounted from the same table that generates the OpenAPI document; each route stays thin:
// resolve the model (404 before reading the body), parse the body, call the handler, send JSON.
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { IncomingMessage, ServerResponse } from 'node:http';
import { MethodNotAllowedError } from '../errors.js';
import type { ModelVersion } from '../engine/types.js';
import { serverVersion } from '../version.js';
import { admit, param } from './admission.js';
import { buildApiDescription, buildModelDescription, inferenceRoutes, type OpenApiDocument, type RouteDefinition } from './api-description.js';
import { errorMiddleware, notFound, requestId } from './errors.js';
import { createBodyParsers } from './inputs.js';
import { kserveV1Route } from './kserve-v1.js';
import { requestLog } from './request-log.js';
import { torchserveRoute } from './torchserve.js';
import type { AppDeps } from './types.js';
import { sendJson } from './respond.js';
import * as health from './health.js';

export { serverVersion };

export interface InferenceAppOptions {
  /** Token check (src/http/auth.ts requireToken) for every route but the HEALTH_PATHS. */
  authenticate?: RequestHandler;
  /** Extra routers mounted before the 404 fallback, e.g. `{'/v2': v2Router(deps)}`. */
  mounts?: Record<string, RequestHandler>;
}

type Handler = (req: Request, res: Response) => Promise<void> | void;

export function createInferenceApp(deps: AppDeps, options: InferenceAppOptions = {}): express.Express {
  const { registry, config, logger, metrics, service } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');
  const bodies = createBodyParsers(config.maxRequestSize, service.limits);
  let description: OpenApiDocument | undefined;
  const apiDescription: Handler = (_req, res) => {
    description ??= buildApiDescription(serverVersion);
    sendJson(res, 200, description);
  };

  /** Resolves `:model_name[/:model_version]`, 404s before any body is read. */
  const resolveModel: RequestHandler = (req, res, next) => {
    const name = param(req, 'model_name')!;
    res.locals.requestedModel = name;
    const mv = service.resolve(name, param(req, 'model_version'));
    // Only a resolved model becomes a metrics label: unknown names must not grow the label set.
    res.locals.model = name;
    res.locals.version = mv.spec.version;
    res.locals.mv = mv;
    next();
  };
  // Admission (model resolved, queue slot taken) comes before the body is read; the codec after it.
  const modelInputRoute = (explain: boolean): RequestHandler[] => [admit(service, 'torchserve'), ...bodies.inputs, wrap(torchserveRoute(explain))];
  const kserveRoute = (explain: boolean): RequestHandler[] => [admit(service, 'kserve-v1'), ...bodies.jsonEnvelope, wrap(kserveV1Route(service, explain))];

  const routeHandlers: Record<string, RequestHandler[]> = {
    apiDescription: [wrap(apiDescription)],
    apiDescriptionGet: [wrap(apiDescription)],
    ping: [wrap(health.ping(deps))],
    predict: modelInputRoute(false),
    predictPut: modelInputRoute(false),
    predictVersion: modelInputRoute(false),
    predictVersionPut: modelInputRoute(false),
    explain: modelInputRoute(true),
    explainPut: modelInputRoute(true),
    explainVersion: modelInputRoute(true),
    explainVersionPut: modelInputRoute(true),
    modelDescription: [
      resolveModel,
      wrap((req, res) => {
        const name = param(req, 'model_name')!;
        const mv = res.locals.mv as ModelVersion;
        const versions = registry.versions(name).map((v) => v.spec.version);
        sendJson(res, 200, buildModelDescription(name, versions, registry.defaultVersion(name), mv.spec.handler.name, serverVersion));
      }),
    ],
    kserveV1Predict: kserveRoute(false),
    kserveV1Explain: kserveRoute(true),
    kserveV1List: [wrap((_req, res) => sendJson(res, 200, { models: registry.names() }))],
    kserveV1Ready: [
      resolveModel,
      wrap((_req, res) => {
        const mv = res.locals.mv as ModelVersion;
        sendJson(res, 200, { name: mv.spec.name, ready: mv.ready });
      }),
    ],
  };

  app.use(requestId);
  app.use(requestLog(logger, metrics));
  // Health checks (load balancers, kubelet probes) carry no token, as TorchServe's /ping: a probe that
  // got 401 would restart or unready every pod the moment token auth is switched on.
  if (options.authenticate) {
    const auth = options.authenticate;
    app.use((req, res, next) => (isHealthPath(req.path) ? next() : auth(req, res, next)));
  }

  const router = express.Router({ strict: false });
  // Grouped by path in table order, each path's methods then its 405 fallback: a known path with
  // another method is 405, not 404 (`GET /` included), and `GET /v1/models/m:predict` reaches the
  // `:predict` path's 405 before the readiness route could read "m:predict" as a model name.
  const byPath = new Map<string, RouteDefinition[]>();
  for (const route of inferenceRoutes) byPath.set(route.path, [...(byPath.get(route.path) ?? []), route]);
  for (const [openApiPath, routes] of byPath) {
    const path = expressPath(openApiPath);
    for (const route of routes) {
      const chain = routeHandlers[route.operationId];
      if (!chain) throw new Error(`no handler for route ${route.operationId}`);
      const label = `${route.method.toUpperCase()} ${route.path}`;
      router[route.method](path, (_req: Request, res: Response, next: NextFunction) => {
        res.locals.route = label;
        next();
      }, ...chain);
    }
    const allowed = routes.map((r) => r.method.toUpperCase()).join(', ');
    router.all(path, (req, res, next) => {
      res.setHeader('Allow', allowed);
      next(new MethodNotAllowedError(`Method ${req.method} is not allowed on ${req.path}; allowed: ${allowed}`));
    });
  }
  app.use(router);
  for (const [prefix, handler] of Object.entries(options.mounts ?? {})) app.use(prefix, handler);
  app.use(notFound);
  app.use(errorMiddleware(config.maxRequestSize));
  return app;
}

/** Routes a health probe calls; they answer without a token (trailing slash ignored, as everywhere). */
export const HEALTH_PATHS = ['/ping', '/v2/health/live', '/v2/health/ready'] as const;
function isHealthPath(path: string): boolean {
  const p = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  return (HEALTH_PATHS as readonly string[]).includes(p);
}

/** `/v1/models/{model_name}:predict` → `/v1/models/:model_name\:predict` (path-to-regexp 8 syntax). */
export function expressPath(openApiPath: string): string {
  return openApiPath.replace(/:/g, '\\:').replace(/\{(\w+)\}/g, ':$1');
}

function wrap(h: Handler): RequestHandler {
  // Express 5 forwards rejected promises to the error middleware by itself.
  return async (req, res) => {
    await h(req, res);
  };
}

/**
 * Request and response classes for node:http whose instances already have `app`'s prototypes (http.createServer's
 * IncomingMessage / ServerResponse options). Express's app.handle sets every request's and response's prototype
 * to app.request / app.response; on objects node:http built from its own classes that is a map change per request,
 * and the inline caches that see both shapes go polymorphic or miss (V8's LoadIC miss handler and lookup iterator
 * near the top of the main thread's profile at c=1, bench/NOTES.md §45). The classes extend node's (so V8 keeps
 * one derived map per class: a plain function as Reflect.construct's new.target built a fresh map per object, 18 µs
 * each), their prototypes sit in front of Express's app.request / app.response in the chain, and they become the
 * app's request and response prototypes: Express's setPrototypeOf then sets the prototype an object already has,
 * which changes nothing. Once per app.
 */
export function requestClassesFor(app: express.Express): RequestClasses {
  const known = requestClasses.get(app);
  if (known) return known;
  class AppRequest extends IncomingMessage {}
  class AppResponse extends ServerResponse {}
  Object.setPrototypeOf(AppRequest.prototype, app.request);
  Object.setPrototypeOf(AppResponse.prototype, app.response);
  app.request = AppRequest.prototype as unknown as express.Request;
  app.response = AppResponse.prototype as unknown as express.Response;
  const classes: RequestClasses = { IncomingMessage: AppRequest, ServerResponse: AppResponse as unknown as typeof ServerResponse };
  requestClasses.set(app, classes);
  return classes;
}

interface RequestClasses {
  IncomingMessage: typeof IncomingMessage;
  ServerResponse: typeof ServerResponse;
}
const requestClasses = new WeakMap<express.Express, RequestClasses>();
