// image_classifier inputs on the event loop's side: base64 unwrapping, and imageToTensor, which hands each image
// to a pool of worker threads (image-worker.ts) so that decoding and the 10–35 ms of JS resizing per photo never
// stall other requests. The preprocessing itself is image-preprocess.ts.
import os from 'node:os';
import { BadRequestError, InternalServerError, ServiceUnavailableError, TorchdError } from '../errors.js';
import type { HandlerConfig } from '../engine/types.js';
import { preprocessImage as preprocessNative, preprocessImageSync, type ImageSpec, type Tensor } from '../native.js';
// Importing image-preprocess also loads sharp on the main thread first, which sharp requires on glibc Linux
// before workers load it (so libvips is not unloaded when a worker exits).
import { EXPECTED, isSmallPng, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, PRESHRINK, preprocessSmallPng, type ImageConfig } from './image-preprocess.js';
import { imageSignature } from './image-header.js';
import type { ImageRequest } from './image-worker.js';
import { startModuleWorker, WorkerPool } from './worker-pool.js';

export { MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE } from './image-preprocess.js';

/** Strips a `data:image/...;base64,` prefix and decodes base64 text; refuses anything that is not base64. */
export function decodeBase64Image(text: string): Buffer {
  const body = text.trim().replace(/^data:[^,]*;base64,/i, '').replace(/\s+/g, '');
  if (body.length === 0) throw new BadRequestError(`Empty base64 image text: ${EXPECTED} bytes as base64`);
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(body)) {
    throw new BadRequestError(`Image text is not valid base64: ${EXPECTED} bytes, base64-encoded`);
  }
  return Buffer.from(body, 'base64');
}

// The worker module sits next to this one: image-worker.ts under tsx (tests), image-worker.js in dist/.
const WORKER_URL = new URL(`./image-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

/**
 * A pool of image workers: one thread per core by default. The server uses one shared pool (imageToTensor's
 * default); `workerUrl` lets tests run a variant of the worker.
 */
export function createImagePool(workerUrl = WORKER_URL, size = Math.max(1, os.availableParallelism())): WorkerPool {
  return new WorkerPool({
    size,
    start: () => startModuleWorker(workerUrl),
    crashError: (reason, started) => (started
      ? new BadRequestError(`Image preprocessing failed: the worker thread processing this image stopped (${reason}); the image was not processed`)
      : new InternalServerError(`Image preprocessing is unavailable: the image worker thread could not start (${reason})`)),
    closedError: () => new ServiceUnavailableError('Image preprocessing stopped: the server is shutting down'),
    // Rebuilt here so callers (and the http layer) see the same classes as an in-thread call would throw.
    replyError: (e) => (e.status === 400 ? new BadRequestError(e.message) : new TorchdError(e.status, e.type, e.message)),
  });
}

let shared: WorkerPool | undefined;

/**
 * TORCHD_NATIVE_IMAGES=0 sends every image to the worker pool (sharp + JS resize): to compare the two, and for the
 * worker pool's own tests. Read per image so a process can switch it.
 */
const nativeImages = (): boolean => process.env.TORCHD_NATIVE_IMAGES !== '0';

/** The native preprocessing spec for a handler config, with the JS path's limits. */
export function nativeSpec(config: ImageConfig): ImageSpec {
  return {
    channels: config.channels,
    ...(config.image_size !== null ? { imageSize: config.image_size } : {}),
    ...(config.crop_size !== null ? { cropSize: config.crop_size } : {}),
    mean: config.mean,
    std: config.std,
    maxSide: MAX_IMAGE_SIDE,
    maxPixels: MAX_IMAGE_PIXELS,
    preshrink: PRESHRINK,
    ...(config.fast_decode ? { fastDecode: true } : {}),
  };
}

/**
 * Image bytes → float32 [1, C, H, W] as image-preprocess.ts's preprocessImage, computed on a worker thread.
 * The bytes are copied once (the encoded image, not the pixels); the result arrives by transfer.
 * Throws BadRequestError for empty, undecodable, truncated or oversized images, and when the worker dies on the image;
 * ServiceUnavailableError when closeImageWorkers() runs meanwhile. Small plain PNGs (preprocessSmallPng) are done
 * inline, on the calling thread, unless a test brings its own `pool` (then everything goes to that pool).
 */
export async function imageToTensor(bytes: Buffer, config: HandlerConfig | ImageConfig, pool?: WorkerPool): Promise<Tensor> {
  const { channels, image_size, crop_size, mean, std } = config;
  const plain = { channels, image_size, crop_size, mean, std };
  // A small PNG (MNIST-sized) costs a few µs natively on this thread (≈ 65 µs in pngjs), less than any thread hop.
  if (pool === undefined && nativeImages() && isSmallPng(bytes, plain)) {
    const native = preprocessImageSync(bytes, nativeSpec(plain));
    if ('data' in native) return { data: native.data, shape: native.shape, dtype: 'float32' };
  }
  // What the native decoder declines (a 16-bit PNG with a gamma chunk, …) keeps today's JS route.
  const inline = pool === undefined ? preprocessSmallPng(bytes, plain) : undefined;
  if (inline) return inline;
  if (pool === undefined && nativeImages()) {
    // JPEG/PNG decoded, resized and normalised in C++ on the addon's threads; what it declines (other formats,
    // CMYK, corrupt data, …) goes on to the worker pool, which gives today's result or today's 400.
    const native = await preprocessNative(bytes, nativeSpec({ channels, image_size, crop_size, mean, std, fast_decode: config.fast_decode }));
    if ('data' in native) return { data: native.data, shape: native.shape, dtype: 'float32' };
  }
  pool ??= shared ??= createImagePool();
  // A private copy is what we may transfer: the caller keeps its Buffer, and a view into a larger (pooled)
  // ArrayBuffer would otherwise be cloned whole.
  const own = new Uint8Array(bytes);
  const request: ImageRequest = { bytes: own, config: { channels, image_size, crop_size, mean, std } };
  const { data, shape } = await pool.run<{ data: Float32Array; shape: number[] }>(request, [own.buffer]);
  return { data, shape, dtype: 'float32' };
}

/** Thread ids of the running image workers (empty before the first image and after closeImageWorkers). */
export function imageWorkerThreadIds(): number[] {
  return shared?.threadIds ?? [];
}

/**
 * Terminates the image worker threads (call on server shutdown). Images in flight reject with ServiceUnavailableError;
 * a later imageToTensor starts the pool again. Idle workers never keep the process alive, so this is for tidiness
 * and tests, not to let the process exit.
 */
export async function closeImageWorkers(): Promise<void> {
  await shared?.close();
}
