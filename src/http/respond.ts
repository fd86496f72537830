// Writing JSON answers: shared by the inference, KServe v2 and management apps.
import type { Response } from 'express';
import { serializeJsonBuffer } from '../handlers/index.js';

/**
 * Sends `body` as JSON with `status` and an explicit Content-Type (TorchServe sends none), unless the
 * response has already gone (client gone, timed out).
 */
export function sendJson(res: Response, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  res.status(status).type('application/json').send(JSON.stringify(body ?? null));
}

/**
 * A 200 with an inference result: serializeJsonBuffer keeps top-k label order (integer-like labels would be
 * reordered by JSON.stringify) and yields to the event loop while writing and encoding large attributions.
 */
export async function sendResult(res: Response, body: unknown): Promise<void> {
  const bytes = await serializeJsonBuffer(body);
  if (res.headersSent || res.destroyed) return;
  res.status(200).type('application/json').send(bytes);
}
