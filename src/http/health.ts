// Health answers shared by the inference listener's /ping and KServe v2's /v2/health/*: one readiness
// (src/lifecycle.ts: models ready, not draining, any other registered condition) for every route.
import type { Request, Response } from 'express';
import type { AppDeps } from './types.js';
import { sendJson } from './respond.js';

function readinessOf(deps: AppDeps): { ready: boolean; draining: boolean } {
  return deps.lifecycle?.readiness() ?? { ready: deps.registry.healthy(), draining: false };
}

/**
 * GET /ping: 200 Healthy when ready; 503 Unhealthy while draining (the server is going away: a load
 * balancer must stop sending); 500 Unhealthy otherwise (a model without a ready worker, as TorchServe).
 */
export const ping = (deps: AppDeps) => (_req: Request, res: Response) => {
  const { ready, draining } = readinessOf(deps);
  sendJson(res, ready ? 200 : draining ? 503 : 500, { status: ready ? 'Healthy' : 'Unhealthy' });
};

/** GET /v2/health/ready: 200 `{"ready": true}` or 503 `{"ready": false}` (draining included). */
export const v2Ready = (deps: AppDeps) => (_req: Request, res: Response) => {
  const { ready } = readinessOf(deps);
  sendJson(res, ready ? 200 : 503, { ready });
};

/** GET /v2/health/live: the process answers; stays 200 while draining (a restart would lose work). */
export const v2Live = (_deps: AppDeps) => (_req: Request, res: Response) => {
  sendJson(res, 200, { live: true });
};
