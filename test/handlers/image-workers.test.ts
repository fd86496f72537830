// Image preprocessing runs on worker threads: results bit-identical to the in-thread code, the event loop free
// while large images are preprocessed, bad inputs and dying workers reported as 400s without losing the pool,
// shutdown, an idle pool that never keeps the process alive, and the compiled dist/ (.js worker) path.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import sharp from 'sharp';
import { BadRequestError, InternalServerError, ServiceUnavailableError } from '../../src/errors.js';
import { closeImageWorkers, createImagePool, imageToTensor, imageWorkerThreadIds } from '../../src/handlers/image.js';
import { preprocessImage } from '../../src/handlers/image-preprocess.js';
import { workerExecArgv } from '../../src/handlers/worker-pool.js';
import { IMAGENET, MNIST, randomBytes, readFx } from './helpers.js';

// JPEG and PNG are preprocessed natively by default (test/handlers/native-preprocess.test.ts); the worker pool
// still serves every other format and whatever the native path declines. These tests are about the pool, so
// every image goes there (child processes inherit the setting).
process.env.TORCHD_NATIVE_IMAGES = '0';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const jpeg = readFx('sample.jpg');
// 1280×853: the top of the 640–1280 px range the resampler costs 10–35 ms of JS on.
const jpeg1280 = await sharp(jpeg).resize(1280).jpeg({ quality: 90 }).toBuffer();

const sha256 = (data: ArrayBufferView): string => createHash('sha256').update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)).digest('hex');

// Serial tests run first, alone, so no in-thread preprocessing of a concurrent test blocks the loop being measured.
test.serial('the event loop stays free while 8 × 1280 px images are preprocessed at once', async (t) => {
  await Promise.all([imageToTensor(jpeg1280, IMAGENET), imageToTensor(jpeg1280, IMAGENET)]); // start the threads
  // In-thread, the 8 resizes run back to back on the loop (measured with preprocessImage on the loop:
  // max and p99 ≈ 39 ms); off-thread only message hand-offs remain (max 4–8.5 ms, p99 2–5 ms). The machine is shared with other
  // test processes, whose scheduling shows up as loop delay too: the best of three runs is judged.
  let best = { max: Infinity, p99: Infinity };
  for (let attempt = 0; attempt < 3 && best.max >= 25; attempt++) {
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const out = await Promise.all(Array.from({ length: 8 }, () => imageToTensor(jpeg1280, IMAGENET)));
    loop.disable();
    for (const o of out) t.deepEqual(o.shape, [1, 3, 224, 224]);
    const run = { max: loop.max / 1e6, p99: loop.percentile(99) / 1e6 };
    t.log(`event-loop delay max ${run.max.toFixed(1)} ms, p99 ${run.p99.toFixed(1)} ms`);
    best = { max: Math.min(best.max, run.max), p99: Math.min(best.p99, run.p99) };
  }
  t.true(best.p99 < 25, `event-loop delay p99 ${best.p99.toFixed(1)} ms`);
  const loadPerCore = loadavg()[0] / cpus().length;
  if (loadPerCore > 1.5) {
    t.log(`max event-loop delay ${best.max.toFixed(1)} ms not asserted: machine oversubscribed (load per core ${loadPerCore.toFixed(1)} > 1.5)`);
  } else {
    t.true(best.max < 25, `event-loop delay max ${best.max.toFixed(1)} ms`);
  }
});

test.serial('closeImageWorkers: images in flight reject with ServiceUnavailableError; the next image restarts the pool', async (t) => {
  await imageToTensor(jpeg, IMAGENET);
  t.true(imageWorkerThreadIds().length >= 1);
  const inFlight = [imageToTensor(jpeg1280, IMAGENET), imageToTensor(jpeg1280, IMAGENET)];
  await closeImageWorkers();
  t.deepEqual(imageWorkerThreadIds(), []);
  for (const p of inFlight) {
    await t.throwsAsync(p, { instanceOf: ServiceUnavailableError, message: 'Image preprocessing stopped: the server is shutting down' });
  }
  const again = await imageToTensor(jpeg, IMAGENET);
  t.deepEqual(again.shape, [1, 3, 224, 224]);
  t.true(imageWorkerThreadIds().length >= 1);
});

const identical: [string, Buffer, typeof IMAGENET][] = [
  ['sample.jpg (640×427)', jpeg, IMAGENET],
  ['sample.jpg re-encoded at 1280×853', jpeg1280, IMAGENET],
  ['sample_exif6.jpg (EXIF rotation)', readFx('sample_exif6.jpg'), IMAGENET],
  ['sample.png as 1-channel 28×28', readFx('sample.png'), { ...MNIST, image_size: 28, crop_size: 28 }],
  ['images/3.png (MNIST)', readFx('images/3.png'), MNIST],
];
for (const [what, bytes, config] of identical) {
  test(`worker result is bit-identical to in-thread preprocessing: ${what}`, async (t) => {
    const [viaWorker, inThread] = await Promise.all([imageToTensor(bytes, config), preprocessImage(bytes, config)]);
    t.deepEqual(viaWorker.shape, inThread.shape);
    t.is(viaWorker.dtype, 'float32');
    t.true(viaWorker.data instanceof Float32Array);
    t.is(sha256(viaWorker.data), sha256(inThread.data));
  });
}

test('the caller keeps its bytes: the worker gets a copy of the encoded image, never the caller\'s buffer', async (t) => {
  const bytes = Buffer.from(jpeg);
  await imageToTensor(bytes, IMAGENET);
  t.is(bytes.length, jpeg.length);
  t.true(bytes.equals(jpeg));
});

test('bad inputs reject with BadRequestError (exact messages) while good ones in the same burst succeed, on the same threads', async (t) => {
  await imageToTensor(jpeg, IMAGENET);
  const before = imageWorkerThreadIds();
  const truncated = jpeg.subarray(0, jpeg.length >> 1);
  const results = await Promise.allSettled([
    imageToTensor(truncated, IMAGENET),
    imageToTensor(jpeg, IMAGENET),
    imageToTensor(randomBytes(1000), IMAGENET),
    imageToTensor(Buffer.alloc(0), IMAGENET),
    imageToTensor(jpeg1280, IMAGENET),
  ]);
  const reason = (i: number): unknown => (results[i] as PromiseRejectedResult).reason;
  t.true(reason(0) instanceof BadRequestError);
  t.is((reason(0) as Error).message, `Could not decode the JPEG image (${truncated.length} bytes): the data is corrupt or truncated; expected JPEG, PNG, WebP, GIF or TIFF`);
  t.true(reason(2) instanceof BadRequestError);
  t.is((reason(2) as Error).message, 'Unsupported or undecodable image (1000 bytes): expected JPEG, PNG, WebP, GIF or TIFF');
  t.true(reason(3) instanceof BadRequestError);
  t.is((reason(3) as Error).message, 'Empty image: the input has 0 bytes; expected JPEG, PNG, WebP, GIF or TIFF bytes');
  for (const i of [1, 4]) {
    t.is(results[i].status, 'fulfilled');
    t.deepEqual((results[i] as PromiseFulfilledResult<{ shape: number[] }>).value.shape, [1, 3, 224, 224]);
  }
  // Failed images are answers, not crashes: the workers that served them are still the pool's.
  for (const id of before) t.true(imageWorkerThreadIds().includes(id), `thread ${id} still in the pool`);
});

const crashFixture = new URL('./crashing-image-worker.ts', import.meta.url);
for (const [how, reason] of [
  ['exit', 'it exited with code 7'],
  ['throw', 'it threw RangeError: fixture: worker crashed'],
] as const) {
  test(`a worker that dies (${how}) rejects what it had in flight with BadRequestError, and the pool replaces it`, async (t) => {
    const pool = createImagePool(crashFixture, 1);
    try {
      t.deepEqual((await imageToTensor(jpeg, IMAGENET, pool)).shape, [1, 3, 224, 224]);
      const [dead] = pool.threadIds;
      // With one thread, the image is in flight on the same worker as the crash.
      const image = imageToTensor(jpeg1280, IMAGENET, pool);
      const crash = pool.run({ crash: how });
      const message = `Image preprocessing failed: the worker thread processing this image stopped (${reason}); the image was not processed`;
      await t.throwsAsync(crash, { instanceOf: BadRequestError, message });
      await t.throwsAsync(image, { instanceOf: BadRequestError, message });
      t.false(pool.threadIds.includes(dead));
      const after = await imageToTensor(jpeg, IMAGENET, pool);
      t.deepEqual(after.shape, [1, 3, 224, 224]);
      t.is(sha256(after.data), sha256((await preprocessImage(jpeg, IMAGENET)).data));
      t.is(pool.threadIds.length, 1);
      t.not(pool.threadIds[0], dead);
    } finally {
      await pool.close();
    }
  });
}

test('a worker that cannot load its module is a server fault: InternalServerError, not a 400', async (t) => {
  const pool = createImagePool(new URL('./no-such-worker.ts', import.meta.url), 1);
  try {
    const err = await t.throwsAsync(imageToTensor(jpeg, IMAGENET, pool), { instanceOf: InternalServerError });
    t.regex(err!.message, /^Image preprocessing is unavailable: the image worker thread could not start \(it threw .*no-such-worker\.ts/);
    t.is((err as InternalServerError).status, 500);
  } finally {
    await pool.close();
  }
});

test('an idle pool does not keep the process alive: a script that preprocesses and returns exits by itself', async (t) => {
  const { stdout } = await run(process.execPath, ['--import=tsx', 'test/handlers/exit-without-close.ts'], { cwd: ROOT, timeout: 60_000 });
  t.deepEqual(JSON.parse(stdout), { shape: [1, 3, 224, 224], threads: 1 });
});

test('a server started with a flag Node refuses for workers (--trace-gc) still preprocesses images on its workers', async (t) => {
  // `--import tsx` as two arguments: the worker must get the flag together with its value.
  const { stdout } = await run(process.execPath, ['--trace-gc', '--import', 'tsx', 'test/handlers/exit-without-close.ts'], { cwd: ROOT, timeout: 60_000 });
  // --trace-gc writes its GC lines to stdout too; the script's answer is the JSON line.
  const answer = stdout.split('\n').filter((line) => line.startsWith('{'));
  t.deepEqual(answer.map((line) => JSON.parse(line)), [{ shape: [1, 3, 224, 224], threads: 1 }]);
});

test('workers get only the module loader flags, each with its value', (t) => {
  t.deepEqual(workerExecArgv([]), []);
  t.deepEqual(workerExecArgv(['--trace-gc', '--input-type=module', '--max-old-space-size=512', '--inspect']), []);
  t.deepEqual(
    workerExecArgv(['--trace-gc', '--import', 'tsx', '--require=./a.cjs', '-r', './b.cjs', '--enable-source-maps', '--loader', 'l.mjs', '--experimental-loader=e.mjs', '--import=file:///x.mjs']),
    ['--import', 'tsx', '--require=./a.cjs', '-r', './b.cjs', '--loader', 'l.mjs', '--experimental-loader=e.mjs', '--import=file:///x.mjs'],
  );
  // The tsx CLI's own flags (preflight --require, loader --import) pass; a flag whose name only starts like one does not.
  t.deepEqual(workerExecArgv(['--require', '/t/preflight.cjs', '--import', 'file:///t/loader.mjs', '--imports-x']), ['--require', '/t/preflight.cjs', '--import', 'file:///t/loader.mjs']);
});

test('compiled to .js (as in dist/), the module starts the .js worker next to it and gives the same result', async (t) => {
  const out = path.join(ROOT, 'test/.tmp/handlers-dist');
  rmSync(out, { recursive: true, force: true });
  await run(process.execPath, [
    'node_modules/typescript/bin/tsc', '--outDir', out, '--rootDir', 'src', '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
    '--target', 'ES2022', '--strict', '--skipLibCheck', '--esModuleInterop', 'src/handlers/image.ts', 'src/handlers/image-worker.ts',
  ], { cwd: ROOT, timeout: 110_000 });
  const image = pathToFileURL(path.join(out, 'handlers/image.js')).href;
  const script = `
    import { readFileSync } from 'node:fs';
    import { createHash } from 'node:crypto';
    import { imageToTensor, closeImageWorkers } from ${JSON.stringify(image)};
    const t = await imageToTensor(readFileSync('test/fixtures/models/sample.jpg'), ${JSON.stringify(IMAGENET)});
    console.log(JSON.stringify({ shape: t.shape, sha256: createHash('sha256').update(new Uint8Array(t.data.buffer)).digest('hex') }));
    await closeImageWorkers();`;
  // No tsx here: a .ts worker could not load, so success means the .js worker ran.
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, timeout: 60_000 });
  const inThread = await preprocessImage(jpeg, IMAGENET);
  t.deepEqual(JSON.parse(stdout), { shape: [1, 3, 224, 224], sha256: sha256(inThread.data) });
});
