// The amplification rows of issue 8 against torchd in a child process, so its memory can be read: each small
// request that used to cost gigabytes or stall the event loop for seconds is refused quickly, the server's RSS
// barely moves, and /ping keeps answering meanwhile.
import test, { type ExecutionContext } from 'ava';
import { cpus, loadavg } from 'node:os';
import { readFile, rm } from 'node:fs/promises';
import { LOOPBACK_HTTP_ONLY_ENV, spawnTorchd, type TorchdChild } from '../_torchd-child.js';
import { startPinger } from './_pinger.js';
import { fixture, makeModelStore } from '../http/_server.js';
import { pngHeaderOnly } from '../handlers/helpers.js';
import { readFileSync } from 'node:fs';
import zlib from 'node:zlib';

const IG_CAP = 64;
const IG_BUDGET_MIB = 512;

let torchd: TorchdChild;
let url: string;
let store: string;

test.before(async () => {
  store = await makeModelStore(['mnist', 'resnet-18', 'multi_out']);
  torchd = spawnTorchd(['start', `--model-store=${store}`, '--models=mnist=mnist.mar,resnet-18=resnet-18.mar,multi_out=multi_out.mar'], {
    env: {
      ...process.env,
      ...LOOPBACK_HTTP_ONLY_ENV,
      // The IG row: a step cap small enough for a CI machine (default 1024) and the default 512 MiB memory budget.
      TS_MAX_IG_STEPS: String(IG_CAP),
      TS_IG_MEMORY_BUDGET: String(IG_BUDGET_MIB * 1024 * 1024),
    },
  });
  // No request before the first row: the digit model's 28×28 input is known from registration (the registry probes
  // a non-resizing image model), so the pixel bomb is refused on a fresh server.
  url = ((await torchd.waitFor('torchd ready', 120_000)).addresses as { inference: string }).inference;
});
test.after.always(async () => {
  if (torchd && torchd.child.exitCode === null) torchd.child.kill('SIGKILL');
  if (store) await rm(store, { recursive: true, force: true });
});

/** VmRSS and VmHWM (peak) of the server, in MiB. */
async function memory(): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${torchd.child.pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

interface Measured {
  status: number;
  body: { type?: string; message?: string };
  ms: number;
  /** Slowest /ping while the request was in flight. */
  pingMaxMs: number;
  /** Largest rise of RSS seen (sampled, and the kernel's peak). */
  growthMiB: number;
}

/** Sends one request while /ping is polled and the server's memory sampled. */
async function measure(path: string, init: RequestInit): Promise<Measured> {
  const before = await memory();
  let done = false;
  let rssMax = before.rss;
  const pinger = startPinger(url);
  const sampler = (async () => {
    while (!done) {
      rssMax = Math.max(rssMax, (await memory()).rss);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const t0 = performance.now();
  const res = await fetch(`${url}${path}`, init);
  const body = (await res.json()) as Measured['body'];
  const ms = performance.now() - t0;
  done = true;
  await sampler;
  const pingMaxMs = await pinger.stop();
  const after = await memory();
  const growthMiB = Math.max(rssMax - before.rss, after.peak - before.peak, after.rss - before.rss);
  return { status: res.status, body, ms, pingMaxMs, growthMiB };
}

function report(t: { log(...v: unknown[]): void }, what: string, m: Measured): void {
  t.log(`${what}: ${m.status} in ${m.ms.toFixed(1)} ms, /ping max ${m.pingMaxMs.toFixed(1)} ms, RSS +${m.growthMiB.toFixed(1)} MiB`);
}

/** Slowest /ping allowed while a refused request is handled (it used to be seconds: 38 s, 12 s). */
const PING_BOUND_MS = 100;

/**
 * Runs `send` (up to 3 times while the answer or /ping is slower than its bound: other processes share these cores),
 * checks the answer and the memory every time, the best answer time always, and the best /ping unless the machine
 * is oversubscribed (load per core > 1.5).
 */
async function refusedQuickly(
  t: ExecutionContext, what: string, send: () => Promise<Measured>, message: string, limits: { ms: number; growthMiB: number },
): Promise<void> {
  let bestPing = Infinity;
  let bestMs = Infinity;
  for (let attempt = 0; attempt < 3 && (bestPing >= PING_BOUND_MS || bestMs >= limits.ms); attempt++) {
    const m = await send();
    report(t, what, m);
    t.is(m.status, 400);
    t.is(m.body.message, message);
    t.true(m.growthMiB < limits.growthMiB, `RSS +${m.growthMiB} MiB`);
    bestPing = Math.min(bestPing, m.pingMaxMs);
    bestMs = Math.min(bestMs, m.ms);
  }
  t.true(bestMs < limits.ms, `answered in ${bestMs} ms at best`);
  const loadPerCore = loadavg()[0] / cpus().length;
  if (loadPerCore > 1.5) t.log(`/ping max ${bestPing.toFixed(1)} ms not asserted: machine oversubscribed (load per core ${loadPerCore.toFixed(1)} > 1.5)`);
  else t.true(bestPing < PING_BOUND_MS, `/ping max ${bestPing} ms`);
}

/**
 * A complete all-black 8-bit greyscale PNG: every row a filter byte and zeros, deflated (9999×9999 is ~100 KB on disk
 * and 100 MB once decoded, 1.2 GB as the float tensor of a [1, 1, H, W] input).
 */
function blackPng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const raw = Buffer.alloc((width + 1) * height);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

test.serial('the first request to a fresh server: a 9999×9999 black PNG to the non-resizing digit model → 400 from its header in < 50 ms, no memory; a 28×28 digit then answers', async (t) => {
  const bomb = blackPng(9999, 9999);
  t.log(`black 9999×9999 PNG: ${bomb.length} bytes`);
  t.true(bomb.length < 200_000);
  await refusedQuickly(t, 'pixel bomb (digits)', () => measure('/predictions/mnist', { method: 'PUT', body: new Uint8Array(bomb) }),
    'Image is 9999x9999 pixels but model mnist takes 28x28 images and its handler does not resize (handler.image_size is null); refused before decoding',
    { ms: 50, growthMiB: 32 });
  const digit = await fetch(`${url}/predictions/mnist`, { method: 'PUT', body: new Uint8Array(readFileSync(fixture('images/3.png'))) });
  t.is(digit.status, 200);
  t.is(await digit.json(), 3);
});

test.serial('a 9999×9999 PNG bomb to a resizing model: refused above max_image_pixels before decoding, in < 50 ms', async (t) => {
  await refusedQuickly(t, 'pixel bomb (ResNet-18)', () => measure('/predictions/resnet-18', { method: 'PUT', body: new Uint8Array(pngHeaderOnly(9999, 9999)) }),
    'Image too large: 9999x9999 = 99980001 pixels exceeds max_image_pixels (40000000); refused before decoding',
    { ms: 50, growthMiB: 32 });
});

test.serial('KServe v2 binary request with 1.5 M empty BYTES elements (6 MB): 400 at once, /ping unaffected, no memory kept', async (t) => {
  // Was 16 s with /ping stalled 38 s and 4.3 GB kept. The 6 MB body itself is read and held once.
  const n = 1_500_000;
  const head = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [n], parameters: { binary_data_size: 4 * n } }] }));
  const body = new Uint8Array(Buffer.concat([head, Buffer.alloc(4 * n)]));
  const headers = { 'inference-header-content-length': String(head.length), 'content-type': 'application/octet-stream' };
  await refusedQuickly(t, '1.5 M BYTES', () => measure('/v2/models/mnist/infer', { method: 'POST', headers, body }),
    'Too many elements: the request has 10001 BYTES elements, more than max_request_elements (10000)', { ms: 1000, growthMiB: 64 });
});

test.serial('KServe v1 with 1 M instances: 400 naming the bound before JSON.parse builds them, /ping keeps answering', async (t) => {
  // Was a 12 s stall; the scan stops at the 10 001st instance, before JSON.parse would build a million arrays.
  const body = `{"instances": [${Array(1_000_000).fill('[0]').join(',')}]}`;
  await refusedQuickly(t, 'v1 1 M instances', () => measure('/v1/models/mnist:predict', { method: 'POST', headers: { 'content-type': 'application/json' }, body }),
    'Too many elements: an array in the JSON body holds more than 10000 arrays, objects or strings (max_request_elements 10000)', { ms: 1000, growthMiB: 64 });
});

test.serial('a 5 MB numeric JSON body to a tensor model: parsed off the event loop (/ping keeps answering), values exact', async (t) => {
  // 8 rows of 87 500 numbers, ~5 MB of JSON (max_request_size is 6.5 MB): JSON.parse alone held the loop 45–110 ms.
  const rows = 8;
  const cols = 87_500;
  const text = Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => ((((r * cols + c) * 7919) % 20011) / 1000 - 10).toFixed(3)));
  const x = text.map((row) => row.map(Number));
  const body = `[${text.map((row) => `[${row.join(',')}]`).join(',')}]`;
  t.log(`body ${(body.length / 1e6).toFixed(1)} MB`);
  t.true(body.length > 4_000_000 && body.length < 6_553_500);
  let bestPing = Infinity;
  for (let attempt = 0; attempt < 3 && bestPing >= PING_BOUND_MS; attempt++) {
    const m = await measure('/predictions/multi_out', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    report(t, '5 MB JSON tensor', m);
    t.is(m.status, 200);
    // multi_out: (x * 2, {sum: x.sum(-1), max: x.amax(-1)}) in float32; the reference is computed here.
    const [twice, { sum, max }] = m.body as unknown as [number[][], { sum: number[]; max: number[] }];
    t.is(twice.length, rows);
    let mismatches = 0;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (twice[r][c] !== Math.fround(x[r][c]) * 2) mismatches++;
    t.is(mismatches, 0);
    for (let r = 0; r < rows; r++) {
      const f = x[r].map(Math.fround);
      const s = f.reduce((a, b) => a + b, 0);
      t.true(Math.abs(sum[r] - s) <= 1e-3 * Math.max(1, Math.abs(s)) + 0.05, `row ${r} sum ${sum[r]} vs ${s}`);
      t.is(max[r], Math.max(...f));
    }
    bestPing = Math.min(bestPing, m.pingMaxMs);
  }
  const loadPerCore = loadavg()[0] / cpus().length;
  if (loadPerCore > 1.5) t.log(`/ping max ${bestPing.toFixed(1)} ms not asserted: machine oversubscribed (load per core ${loadPerCore.toFixed(1)} > 1.5)`);
  else t.true(bestPing < PING_BOUND_MS, `/ping max ${bestPing} ms`);
});

// The budget bounds what LibTorch's allocator holds at once (counted by the allocator wrapper); RSS adds glibc's
// per-thread arenas (the executor thread and its intra-op thread each keep what they freed between passes), so
// the growth was 505–580 MiB in quiet and loaded runs and 718 MiB once while the machine was also compiling.
// Unbounded, n_steps 64 would hold ≈ 1.9 GiB (≈ 30 MiB a step).
test.serial('a ResNet-18 explanation at the IG step cap grows RSS by less than the memory budget + 50 %', async (t) => {
  const photo = new Uint8Array(readFileSync(fixture('sample.jpg')));
  // One step first: the first explanation loads the module as saved for autograd (its weights, once).
  const warm = await fetch(`${url}/explanations/resnet-18?n_steps=1`, { method: 'PUT', body: photo });
  t.is(warm.status, 200, await warm.text());
  const over = await fetch(`${url}/explanations/resnet-18?n_steps=${IG_CAP + 1}`, { method: 'PUT', body: photo });
  t.is(((await over.json()) as { message: string }).message, `n_steps must be an integer from 1 to ${IG_CAP} (max_ig_steps), got "${IG_CAP + 1}"`);
  const m = await measure(`/explanations/resnet-18?n_steps=${IG_CAP}`, { method: 'PUT', body: photo });
  report(t, `IG ResNet-18 n_steps ${IG_CAP}, budget ${IG_BUDGET_MIB} MiB`, m);
  t.is(m.status, 200);
  t.is((m.body as unknown as number[][][]).length, 3);
  t.true(m.growthMiB < IG_BUDGET_MIB * 1.5, `RSS +${m.growthMiB} MiB`);
});
