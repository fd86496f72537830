// The one error middleware: every failure becomes `{code, type, message}` JSON with its status.
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { randomUUID } from 'node:crypto';
import {
  BadRequestError,
  InternalServerError,
  PayloadTooLargeError,
  ResourceNotFoundError,
  TorchdError,
} from '../errors.js';

/** Echo the client's x-request-id or mint a UUID; set before anything can fail. */
export const requestId: RequestHandler = (req, res, next) => {
  const given = req.get('x-request-id');
  const id = given && given.length <= 200 ? given : randomUUID();
  res.locals.requestId = id;
  res.setHeader('x-request-id', id);
  next();
};

/** Unknown route → 404 ResourceNotFoundException. Mount after every router. */
export const notFound: RequestHandler = (_req, _res, next) => next(new ResourceNotFoundError());

/** Map body-parser/multer/internal errors onto TorchdError. */
export function toTorchdError(err: unknown, maxRequestSize: number): TorchdError {
  if (err instanceof TorchdError) return err;
  const e = err as { type?: string; code?: string; status?: number; message?: string };
  if (e?.type === 'entity.too.large' || e?.code === 'LIMIT_FILE_SIZE' || e?.code === 'LIMIT_FIELD_VALUE') {
    return new PayloadTooLargeError(maxRequestSize);
  }
  if (e?.type === 'entity.parse.failed') return new BadRequestError(`Malformed JSON body: ${e.message}`);
  if (typeof e?.code === 'string' && e.code.startsWith('LIMIT_')) return new BadRequestError(`Multipart: ${e.message}`);
  if (e?.status && e.status >= 400 && e.status < 500) return new BadRequestError(e.message ?? 'Bad request');
  return new InternalServerError(e?.message ?? String(err));
}

export function errorMiddleware(maxRequestSize: number): ErrorRequestHandler {
  return (err, _req, res, _next) => {
    // A request refused after admission (a bad body) gives its queue slot back before the client sees the answer.
    (res.locals.admission as { release(): void } | undefined)?.release();
    const t = toTorchdError(err, maxRequestSize);
    if (t.status >= 500) res.locals.error = err;
    if (res.headersSent) {
      res.end();
      return;
    }
    for (const [k, v] of Object.entries(t.headers)) res.setHeader(k, v);
    res.status(t.status).type('application/json').send(JSON.stringify(t.toJSON()));
  };
}
