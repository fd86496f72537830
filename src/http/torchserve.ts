// TorchServe's REST inference codec: `/predictions` and `/explanations` bodies (raw, multipart, form, JSON) become a
// service request; the result goes back as the bare result, or a JSON array of one result per part.
import type { Request, Response } from 'express';
import { plainJson } from '../bounded-json.js';
import { BadRequestError } from '../errors.js';
import type { ExplainParams, InputPart, ServiceRequest, ServiceResult } from '../service/index.js';
import { admissionOf } from './admission.js';
import { heatmapRequested, sendHeatmaps } from './explanation-format.js';
import { queryOf } from './inputs.js';
import { sendResult } from './respond.js';

/** Request fields that are parameters of the call, never model inputs. */
const PARAMETER_NAMES = ['target', 'n_steps'] as const;

/** Splits parameter fields (`target`, `n_steps`) from input parts; the query string supplies them too. */
function splitParts(parts: InputPart[], query: Record<string, string>): { inputs: InputPart[]; params: Record<string, unknown> } {
  const params: Record<string, unknown> = { target: query.target, n_steps: query.n_steps };
  const inputs: InputPart[] = [];
  for (const part of parts) {
    if ((PARAMETER_NAMES as readonly string[]).includes(part.name)) {
      params[part.name] = 'json' in part ? plainJson(part.json) : part.data.toString('utf8').trim();
    } else {
      inputs.push(part);
    }
  }
  // A JSON body may carry the parameters as fields next to its input: {"data": ..., "target": 3}.
  const only = inputs.length === 1 ? inputs[0] : undefined;
  if (only && 'json' in only && only.json !== null && typeof only.json === 'object' && !Array.isArray(only.json)) {
    const body = only.json as Record<string, unknown>;
    // plainJson: a long target list of a large body arrives packed (bounded-json.ts).
    for (const key of PARAMETER_NAMES) if (body[key] !== undefined) params[key] = plainJson(body[key]);
  }
  return { inputs, params };
}

/** The service request of a /predictions or /explanations call from its parts and query string. */
export function torchserveRequest(parts: InputPart[], query: Record<string, string>, explain: boolean): ServiceRequest {
  const { inputs, params } = splitParts(parts, query);
  if (inputs.length === 0) {
    throw new BadRequestError('Missing input: send the input as the request body (curl -T FILE), a multipart part (curl -F data=@FILE) or JSON');
  }
  const request: ServiceRequest = { input: { kind: 'parts', parts: inputs }, dtype: query.dtype, shape: query.shape };
  if (explain) request.explain = { steps: params.n_steps, target: params.target } satisfies ExplainParams;
  return request;
}

/** The TorchServe body of a result: one result per part for a one-input model, a lone part's result bare. */
export function torchserveBody(result: ServiceResult): unknown {
  const rows = result.kind === 'rows' ? result.rows : [];
  return rows.length === 1 ? rows[0] : rows;
}

/** Route handler of /predictions (explain false) or /explanations (explain true); admission and body come first. */
export function torchserveRoute(explain: boolean): (req: Request, res: Response) => Promise<void> {
  return async (req: Request, res: Response) => {
    const query = queryOf(req);
    const request = torchserveRequest(res.locals.inputs as InputPart[], query, explain);
    const heatmap = explain ? heatmapRequested(req, query) : undefined;
    if (heatmap) request.explain!.heatmap = heatmap;
    const result = await admissionOf(res).run(request);
    if (heatmap) return sendHeatmaps(res, result.kind === 'rows' ? (result.rows as Buffer[]) : []);
    await sendResult(res, torchserveBody(result));
  };
}
