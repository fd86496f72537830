// The first step of every inference route: resolve the model (a 404 reads no body) and take its queue slot from
// the inference service (a 503 reads no body either), before any body parser runs.
import type { Request, RequestHandler, Response } from 'express';
import type { Admission, InferenceService } from '../service/index.js';
import { clientSignal } from './inputs.js';

/** Route parameters are single path segments here (no wildcards), so always strings. */
export function param(req: Request, name: string): string | undefined {
  const v = (req.params as Record<string, string | string[] | undefined>)[name];
  return Array.isArray(v) ? v.join('/') : v;
}

/**
 * Middleware: `res.locals.admission` holds the slot; it is given back when the response closes (a failed body read,
 * a client gone), or, when the request is running by then, as soon as its work ends.
 */
export function admit(service: InferenceService, protocol: string): RequestHandler {
  return (req, res, next) => {
    const model = param(req, 'model_name')!;
    res.locals.requestedModel = model;
    const version = param(req, 'model_version');
    const mv = service.resolve(model, version);
    // Only a resolved model becomes a metrics label: unknown names must not grow the label set.
    res.locals.model = mv.spec.name;
    res.locals.version = mv.spec.version;
    res.locals.mv = mv;
    const admission = service.admit({ model, version, protocol, signal: clientSignal(res) });
    res.locals.admission = admission;
    res.once('close', () => admission.release());
    next();
  };
}

export function admissionOf(res: Response): Admission {
  return res.locals.admission as Admission;
}
