// KServe v1 codec: `{"instances": [...]}` → a service request; `{"predictions": [...]}` / `{"explanations": [...]}`.
import type { Request, Response } from 'express';
import { PackedArray } from '../bounded-json.js';
import { BadRequestError } from '../errors.js';
import { checkElementCount, type InferenceService, type ServiceRequest } from '../service/index.js';
import { admissionOf } from './admission.js';
import { heatmapRequested, sendHeatmaps } from './explanation-format.js';
import { queryOf } from './inputs.js';
import { sendResult } from './respond.js';

function instancesOf(body: unknown): unknown[] | PackedArray {
  const instances = (body as { instances?: unknown } | null)?.instances;
  if (instances instanceof PackedArray) return instances; // a large numeric list parsed off the loop (never empty)
  if (!Array.isArray(instances) || instances.length === 0) {
    throw new BadRequestError('Expected a KServe v1 body {"instances": [...]} with at least one instance');
  }
  return instances;
}

/**
 * The service request of a v1 envelope. `:explain` takes `n_steps` from the query or the body, and a target per
 * instance (`"target": n`) or from the query.
 */
export function kserveV1Request(body: unknown, query: Record<string, string>, explain: boolean, service: InferenceService): ServiceRequest {
  const listed = instancesOf(body);
  checkElementCount(listed.length, 'instances', service.limits.maxRequestElements);
  // Counted before a packed list is split into its rows.
  const instances: unknown[] = listed instanceof PackedArray ? listed.rows() : listed;
  const request: ServiceRequest = { input: { kind: 'instances', instances }, dtype: query.dtype };
  if (explain) {
    request.explain = {
      steps: query.n_steps ?? (body as { n_steps?: unknown }).n_steps,
      target: instances.map((i) => (i !== null && typeof i === 'object' ? (i as { target?: unknown }).target : undefined) ?? query.target),
    };
  }
  return request;
}

export function kserveV1Route(service: InferenceService, explain: boolean): (req: Request, res: Response) => Promise<void> {
  return async (req: Request, res: Response) => {
    const query = queryOf(req);
    const request = kserveV1Request(req.body, query, explain, service);
    const heatmap = explain ? heatmapRequested(req, query) : undefined;
    if (heatmap) request.explain!.heatmap = heatmap;
    const result = await admissionOf(res).run(request);
    const rows = result.kind === 'rows' ? result.rows : [];
    if (heatmap) return sendHeatmaps(res, rows as Buffer[], (explanations) => ({ explanations }));
    await sendResult(res, explain ? { explanations: rows } : { predictions: rows });
  };
}
