// Writing JSON answers: shared by the inference, KServe v2 and management apps.
import type { Response } from 'express';
import { serializeJsonChunks } from '../handlers/index.js';
import { OFF_LOOP_JSON_NUMBERS } from '../service/limits.js';

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
 * reordered by JSON.stringify) and yields to the event loop while writing; large tensors are encoded off it.
 */
export async function sendResult(res: Response, body: unknown): Promise<void> {
  const chunks = await serializeJsonChunks(body, OFF_LOOP_JSON_NUMBERS);
  if (res.headersSent || res.destroyed) return;
  res.status(200).type('application/json');
  if (chunks.length === 1 && chunks[0].length <= WRITE_SLICE) {
    res.send(chunks[0]);
    return;
  }
  res.setHeader('Content-Length', String(chunks.reduce((n, c) => n + c.length, 0)));
  await writeBody(res, chunks);
}

/**
 * Bytes handed to the socket at once: a write copies what the kernel takes right away on the event loop, and one
 * 13 MB write held it 6–24 ms on loopback (bench/NOTES.md §31); 1 MiB pieces cost well under 1 ms each.
 */
const WRITE_SLICE = 1 << 20;

/**
 * Writes `chunks` as the response body in pieces of at most WRITE_SLICE bytes, waiting for the socket to drain
 * between them, then ends the response. The headers (Content-Length included) must be set. Stops if the client
 * leaves.
 */
export async function writeBody(res: Response, chunks: Buffer[]): Promise<void> {
  for (const chunk of chunks) {
    for (let off = 0; off < chunk.length; off += WRITE_SLICE) {
      if (res.destroyed) return;
      if (!res.write(chunk.subarray(off, off + WRITE_SLICE))) await drained(res);
    }
  }
  if (!res.destroyed) res.end();
}

/** Resolves on the response's next 'drain', or when it closes (a client gone never drains). */
function drained(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
