// Response bodies too costly to encode on the event loop, encoded on worker threads:
// - large tensors of a JSON body (serializeJsonBuffer): printing 700 000 numbers takes 100–250 ms, and even the sliced
//   writer's pieces (building the JS arrays, joining, UTF-8) held the loop 10–45 ms per response;
// - explanation heatmaps (renderHeatmap): the per-pixel colour map, the percentile sort and the overlay of a 224×224
//   map held it 40–65 ms (bench/NOTES.md §31).
// The thread gets copies of the typed arrays (a tensor's own memory may be an external buffer shared with the native
// side, so it is never transferred) and sends back the bytes by transfer. It runs the same functions a test can run
// in process (tensorJsonText, renderHeatmap), so the bytes are the same.
import os from 'node:os';
import type { Tensor, TypedArray } from '../native.js';
import { InternalServerError, ServiceUnavailableError } from '../errors.js';
import type { HeatmapOptions, HeatmapSource } from './heatmap.js';
import type { TensorJson } from './output.js';
import { startModuleWorker, WorkerPool } from './worker-pool.js';

const WORKER_URL = new URL(`./response-encoder-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

/** What the encoder thread receives. */
export type EncodeRequest =
  | { op: 'json'; tensor: Tensor; dropDims: number; flat: boolean }
  | { op: 'heatmap'; source: HeatmapSource; options: HeatmapOptions };

let pool: WorkerPool | undefined;

function encoderPool(): WorkerPool {
  return (pool ??= new WorkerPool({
    // Two at most: such responses are rare, and each thread keeps a V8 heap.
    size: Math.max(1, Math.min(2, os.availableParallelism())),
    start: () => startModuleWorker(WORKER_URL),
    crashError: (reason, started) => new InternalServerError(started
      ? `Encoding the response failed: the response encoder thread stopped (${reason})`
      : `Encoding the response failed: the response encoder thread could not start (${reason})`),
    closedError: () => new ServiceUnavailableError('torchd is shutting down'),
  }));
}

/** A copy of `t` whose data owns its ArrayBuffer (to transfer), and that buffer. */
function copied(t: Tensor, transfer: ArrayBuffer[]): Tensor {
  const data = t.data.slice() as TypedArray;
  transfer.push(data.buffer as ArrayBuffer);
  return { data, shape: t.shape, dtype: t.dtype };
}

async function encode(request: EncodeRequest, transfer: ArrayBuffer[]): Promise<Buffer> {
  const bytes = await encoderPool().run<Uint8Array>(request, transfer);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** `t` as JSON text in UTF-8 (tensorJsonText), encoded on the encoder thread. Rejects with InternalServerError if it fails. */
export function encodeTensorJsonOffLoop(t: TensorJson): Promise<Buffer> {
  const transfer: ArrayBuffer[] = [];
  return encode({ op: 'json', tensor: copied(t.tensor, transfer), dropDims: t.dropDims, flat: t.flat }, transfer);
}

/**
 * renderHeatmap on the encoder thread: the same PNG. Rejects with InternalServerError (its message) where renderHeatmap
 * throws its TypeError (tensors not image-shaped).
 */
export function renderHeatmapOffLoop(source: HeatmapSource, options: HeatmapOptions = {}): Promise<Buffer> {
  const transfer: ArrayBuffer[] = [];
  const sent: HeatmapSource = { ...source, attributions: copied(source.attributions, transfer) };
  if (source.input) sent.input = copied(source.input, transfer);
  return encode({ op: 'heatmap', source: sent, options }, transfer);
}

/** Terminates the encoder threads (server shutdown); a later encode starts them again. */
export async function closeResponseEncoders(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.close();
}
