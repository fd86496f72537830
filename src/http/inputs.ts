// Turns a request body into model inputs, the way the spec's "How a request body becomes model
// input" table says. Parsing happens per route (after the model is resolved, so an unknown model is
// a 404 without reading the body), with every limit taken from max_request_size.
import express, { type Request, type RequestHandler, type Response } from 'express';
import multer from 'multer';
import type { IncomingMessage } from 'node:http';
import { BadRequestError, PayloadTooLargeError } from '../errors.js';

import type { InputPart } from '../handlers/index.js';

export type { InputPart };

/** Name given to an input that arrived as the whole body (TorchServe calls it `body`). */
export const BODY_PART = 'body';

const contentType = (req: IncomingMessage) => req.headers['content-type'] ?? '';
const isJson = (req: IncomingMessage) => /^application\/([\w.+-]+\+)?json\b/i.test(contentType(req));
const isForm = (req: IncomingMessage) => /^application\/x-www-form-urlencoded\b/i.test(contentType(req));
const isMultipart = (req: IncomingMessage) => /^multipart\/form-data\b/i.test(contentType(req));

export interface BodyParsers {
  /** Any body form → `res.locals.inputs: InputPart[]` (never empty: missing input is a 400). */
  inputs: RequestHandler[];
  /** A body that must be a JSON document whatever its Content-Type (KServe envelopes). */
  jsonEnvelope: RequestHandler[];
}

export function createBodyParsers(maxRequestSize: number): BodyParsers {
  const limit = maxRequestSize;
  const json = express.json({ limit, strict: false, type: isJson });
  const form = express.urlencoded({ limit, extended: false, type: isForm, parameterLimit: 10_000 });
  // Everything that is neither JSON, a form nor multipart arrives as bytes: no Content-Type
  // (`curl -T`), octet-stream, image/*, text/*, and anything unknown.
  const raw = express.raw({ limit, type: (req) => !isJson(req) && !isForm(req) && !isMultipart(req) });
  const upload = multer({
    storage: multer.memoryStorage(),
    limits: { fileSize: limit, fieldSize: limit, files: 256, fields: 1000, parts: 1256 },
  }).any();
  const multipart: RequestHandler = (req, res, next) => {
    if (!isMultipart(req)) return next();
    upload(req, res, (err?: unknown) => {
      if (!err) return next();
      const e = err as { code?: string; status?: number; message?: string };
      // busboy's own parse errors carry no code: they are the client's malformed body.
      if (e.code === undefined && e.status === undefined) next(new BadRequestError(`Malformed multipart body: ${e.message}`));
      else next(err);
    });
  };

  const toInputs: RequestHandler = (req, res, next) => {
    res.locals.inputs = collectInputs(req);
    next();
  };
  const envelope: RequestHandler = (req, res, next) => {
    // body-parser turns an empty body into {}; an envelope-less request is the client's mistake.
    if (req.body === undefined || req.get('content-length') === '0') {
      return next(new BadRequestError('Missing request body: expected a JSON document, e.g. {"instances": [...]}'));
    }
    next();
  };
  return {
    inputs: [rejectOversized(limit), json, form, multipart, raw, toInputs],
    jsonEnvelope: [rejectOversized(limit), express.json({ limit, strict: false, type: () => true }), envelope],
  };
}

/**
 * A declared Content-Length over the limit is refused before reading: Node discards the unread body
 * after the response, so the client still receives the 413 JSON.
 */
function rejectOversized(limit: number): RequestHandler {
  return (req, _res, next) => {
    const length = Number(req.get('content-length'));
    if (Number.isFinite(length) && length > limit) return next(new PayloadTooLargeError(limit));
    next();
  };
}

function collectInputs(req: Request): InputPart[] {
  const body: unknown = req.body;
  const parts: InputPart[] = [];
  if (isMultipart(req)) {
    for (const f of (req.files as Express.Multer.File[] | undefined) ?? []) {
      if (f.size === 0) throw new BadRequestError(`Input "${f.fieldname}" is empty`);
      parts.push({ name: f.fieldname, contentType: f.mimetype || undefined, data: f.buffer });
    }
    pushFields(parts, body as Record<string, unknown> | undefined);
  } else if (isForm(req)) {
    pushFields(parts, body as Record<string, unknown> | undefined);
  } else if (isJson(req)) {
    if (body !== undefined) parts.push({ name: BODY_PART, json: body });
  } else if (Buffer.isBuffer(body) && body.length > 0) {
    parts.push({ name: BODY_PART, contentType: contentTypeOf(req), data: body });
  }
  if (parts.length === 0) {
    throw new BadRequestError(
      'Missing input: send the input as the request body (curl -T FILE), a multipart part (curl -F data=@FILE) or JSON',
    );
  }
  return parts;
}

function pushFields(parts: InputPart[], fields: Record<string, unknown> | undefined): void {
  for (const [name, value] of Object.entries(fields ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) {
      parts.push({ name, contentType: 'text/plain', data: Buffer.from(String(v), 'utf8') });
    }
  }
}

function contentTypeOf(req: Request): string | undefined {
  return req.get('content-type')?.split(';')[0].trim().toLowerCase() || undefined;
}

/** The query string as plain strings (the first value of a repeated key). */
export function queryOf(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.query)) {
    const first = Array.isArray(v) ? v[0] : v;
    if (typeof first === 'string') out[k] = first;
  }
  return out;
}

/** Aborted when the client goes away before the response is written. */
export function clientSignal(res: Response): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(new Error('client disconnected'));
  });
  return controller.signal;
}
