// Writing JSON answers: shared by the inference, KServe v2 and management apps.
import type { Response } from 'express';

/**
 * Sends `body` as JSON with `status` and an explicit Content-Type (TorchServe sends none), unless the
 * response has already gone (client gone, timed out).
 */
export function sendJson(res: Response, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  res.status(status).type('application/json').send(JSON.stringify(body ?? null));
}
