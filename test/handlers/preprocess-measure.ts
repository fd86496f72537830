// Measurement (not a test: ava only runs *.test.ts): event-loop delay and throughput of image preprocessing with
// 16 images in flight at once, for sample.jpg (640×427) and a 1280 px re-encode of it.
// Run: npx tsx test/handlers/preprocess-measure.ts [rounds] [--in-thread]   → one JSON line per input size.
// --in-thread measures preprocessImage on the event loop (what imageToTensor did before the worker pool).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import sharp from 'sharp';
import type { HandlerConfig } from '../../src/engine/types.js';
import { closeImageWorkers, imageToTensor } from '../../src/handlers/image.js';
import { preprocessImage } from '../../src/handlers/image-preprocess.js';
import { IMAGENET, readFx } from './helpers.js';

const CONCURRENT = 16;
const rounds = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 5);
const inThread = process.argv.includes('--in-thread');
const preprocess: (bytes: Buffer, config: HandlerConfig) => Promise<unknown> = inThread ? preprocessImage : imageToTensor;

async function measure(label: string, bytes: Buffer): Promise<void> {
  // Warm-up: JIT, sharp/libvips start-up and (after the change) the worker pool.
  await Promise.all(Array.from({ length: 4 }, () => preprocess(bytes, IMAGENET)));
  const perRound: number[] = [];
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  for (let r = 0; r < rounds; r++) {
    const start = performance.now();
    await Promise.all(Array.from({ length: CONCURRENT }, () => preprocess(bytes, IMAGENET)));
    perRound.push(performance.now() - start);
  }
  loop.disable();
  perRound.sort((a, b) => a - b);
  const median = perRound[Math.floor(perRound.length / 2)];
  console.log(JSON.stringify({
    input: label,
    mode: inThread ? 'in-thread' : 'worker pool',
    concurrent: CONCURRENT,
    rounds,
    median_round_ms: +median.toFixed(1),
    images_per_s: +((CONCURRENT * 1000) / median).toFixed(1),
    loop_max_ms: +(loop.max / 1e6).toFixed(1),
    loop_p99_ms: +(loop.percentile(99) / 1e6).toFixed(1),
    loop_mean_ms: +(loop.mean / 1e6).toFixed(2),
  }));
}

const jpg = readFx('sample.jpg');
const jpg1280 = await sharp(jpg).resize(1280).jpeg({ quality: 90 }).toBuffer();
await measure('sample.jpg 640x427', jpg);
await measure('sample.jpg re-encoded 1280x853', jpg1280);
await closeImageWorkers();
