// Turns a request body into model inputs, the way the spec's "How a request body becomes model input" table says.
// Bodies are read only after the model is resolved and the request admitted (a 404 or a 503 reads nothing), with
// every limit taken from max_request_size. A body that starts with an image signature is an image whatever its
// Content-Type says (`curl --data-binary @kitten.jpg` sends it as a form, `hey -D` as text/plain).
import express, { type Request, type RequestHandler, type Response } from 'express';
import multer from 'multer';
import type { IncomingMessage } from 'node:http';
import { BadRequestError, PayloadTooLargeError } from '../errors.js';
import { imageSignature } from '../handlers/image-header.js';
import type { InputPart } from '../handlers/index.js';
import { checkElementCount, parseRequestJson, type ServiceLimits } from '../service/index.js';

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
  /** A body that must be a JSON document whatever its Content-Type (KServe v1 envelopes) → `req.body`. */
  jsonEnvelope: RequestHandler[];
}

export function createBodyParsers(maxRequestSize: number, limits: ServiceLimits): BodyParsers {
  const limit = maxRequestSize;
  // Everything but multipart arrives as bytes and is parsed here (JSON with its depth bound, forms, raw).
  const raw = express.raw({ limit, type: (req) => !isMultipart(req) });
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
    collectInputs(req, limits).then((inputs) => {
      res.locals.inputs = inputs;
      next();
    }, next);
  };
  const envelope: RequestHandler = (req, _res, next) => {
    const body: unknown = req.body;
    // An envelope-less request is the client's mistake.
    if (!Buffer.isBuffer(body) || body.length === 0) {
      return next(new BadRequestError('Missing request body: expected a JSON document, e.g. {"instances": [...]}'));
    }
    parseRequestJson(body, limits, 'JSON body').then((value) => {
      req.body = value;
      next();
    }, next);
  };
  return {
    inputs: [rejectOversized(limit), multipart, raw, toInputs],
    jsonEnvelope: [rejectOversized(limit), express.raw({ limit, type: () => true }), envelope],
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

const MISSING_INPUT = 'Missing input: send the input as the request body (curl -T FILE), a multipart part (curl -F data=@FILE) or JSON';

async function collectInputs(req: Request, limits: ServiceLimits): Promise<InputPart[]> {
  const body: unknown = req.body;
  const parts: InputPart[] = [];
  if (isMultipart(req)) {
    for (const f of (req.files as Express.Multer.File[] | undefined) ?? []) {
      if (f.size === 0) throw new BadRequestError(`Input "${f.fieldname}" is empty`);
      parts.push({ name: f.fieldname, contentType: f.mimetype || undefined, data: f.buffer });
    }
    for (const [name, value] of Object.entries((body ?? {}) as Record<string, unknown>)) {
      for (const v of Array.isArray(value) ? value : [value]) pushField(parts, name, String(v));
    }
  } else if (Buffer.isBuffer(body) && body.length > 0) {
    if (imageSignature(body)) parts.push({ name: BODY_PART, contentType: contentTypeOf(req), data: body });
    else if (isJson(req)) parts.push({ name: BODY_PART, json: await parseRequestJson(body, limits, 'JSON body') });
    else if (isForm(req)) parseForm(parts, body, limits);
    else parts.push({ name: BODY_PART, contentType: contentTypeOf(req), data: body });
  }
  if (parts.length === 0) throw new BadRequestError(MISSING_INPUT);
  return parts;
}

/** `a=1&b=2` fields as text parts, counted against max_request_elements before any is decoded. */
function parseForm(parts: InputPart[], body: Buffer, limits: ServiceLimits): void {
  const text = body.toString('latin1');
  let fields = 1;
  for (let i = text.indexOf('&'); i >= 0; i = text.indexOf('&', i + 1)) fields++;
  checkElementCount(fields, 'form fields', limits.maxRequestElements);
  for (const [name, value] of new URLSearchParams(body.toString('utf8'))) pushField(parts, name, value);
}

function pushField(parts: InputPart[], name: string, value: string): void {
  parts.push({ name, contentType: 'text/plain', data: Buffer.from(value, 'utf8') });
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
