// The longest event-loop block while torchd answers each kind of large response (bench/NOTES.md §31): the server runs
// in this process, the client in a worker thread (its own loop), and a 1 ms interval probe plus
// perf_hooks.monitorEventLoopDelay record the largest gap of the server's loop during each request.
// Run: npx tsx bench/response-loop.ts [repeats]   (needs test/fixtures/models/resnet18.pt)
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { fixture, startTestServer } from '../test/http/_server.js';

const repeats = Number(process.argv[2] ?? 3);
const server = await startTestServer(['multi_out', 'resnet-18']);
const url = server.url;

// The client: fetches and reads the whole body on its own thread; answers status and byte count. Request bodies are
// handed over once beforehand (`define`), so copying a 5 MB string to it is not counted against the server's loop.
const client = new Worker(
  `const { parentPort } = require('node:worker_threads');
   const defined = new Map();
   parentPort.on('message', async ({ id, url, init, define }) => {
     if (define) { defined.set(define, init); return; }
     const res = await fetch(url, defined.get(id.split('#')[0]));
     const bytes = (await res.arrayBuffer()).byteLength;
     parentPort.postMessage({ id, status: res.status, bytes, type: res.headers.get('content-type') });
   });`,
  { eval: true },
);
let nextId = 0;
const defined = new Set<string>();
/** `key` names the request (its path and body) for the client. */
function send(key: string, path: string, init: RequestInit): Promise<{ status: number; bytes: number; type: string }> {
  const id = `${key}#${nextId++}`;
  return new Promise((resolve) => {
    const onMessage = (m: { id: string; status: number; bytes: number; type: string }) => {
      if (m.id !== id) return;
      client.off('message', onMessage);
      resolve(m);
    };
    client.on('message', onMessage);
    if (!defined.has(key)) {
      defined.add(key);
      client.postMessage({ define: key, init });
    }
    client.postMessage({ id, url: url + path });
  });
}

/** One request; the largest gap of a 1 ms interval (ms) and monitorEventLoopDelay's max (ms) meanwhile. */
async function measure(key: string, path: string, init: RequestInit) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  let last = performance.now();
  let gap = 0;
  const probe = setInterval(() => {
    const now = performance.now();
    gap = Math.max(gap, now - last);
    last = now;
  }, 1);
  h.enable();
  const t0 = performance.now();
  const r = await send(key, path, init);
  const ms = performance.now() - t0;
  clearInterval(probe);
  h.disable();
  return { ...r, ms, gap, histMax: h.max / 1e6 };
}

// The bodies are built in a function and kept only as bytes: the strings that build them (700 000 numbers) would
// otherwise stay in this heap and make every major GC of the server's loop slower than the server alone.
function bodies() {
  const rows = 8;
  const cols = 87_500;
  const x = Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => ((((r * cols + c) * 7919) % 20011) / 1000 - 10).toFixed(3)));
  const tensor = `[${x.map((row) => `[${row.join(',')}]`).join(',')}]`;
  // max_request_elements (10 000) instances of 60 numbers: many small rows instead of a few long ones.
  const many = Array.from({ length: 10_000 }, (_, r) => `[${Array.from({ length: 60 }, (_, c) => (((r * 60 + c) * 7919) % 20011) / 1000 - 10).map((v) => v.toFixed(3)).join(',')}]`);
  return {
    tensor: Buffer.from(tensor),
    v1Packed: Buffer.from(`{"instances": ${tensor}}`),
    v1Many: Buffer.from(`{"instances": [${many.join(',')}]}`),
    v2Json: Buffer.from(`{"inputs": [{"name": "x", "datatype": "FP32", "shape": [${rows}, ${cols}], "data": ${tensor}}]}`),
  };
}
const { tensor: tensorBody, v1Packed, v1Many, v2Json } = bodies();
const photo = new Uint8Array(readFileSync(fixture('sample.jpg')));
const json = { 'content-type': 'application/json' };

/** A v2 binary request: one BYTES element, the JPEG (4-byte little-endian length, then its bytes). */
function v2BinaryImage(): RequestInit {
  const head = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 4 + photo.length } }] }));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(photo.length);
  return {
    method: 'POST',
    headers: { 'inference-header-content-length': String(head.length), 'content-type': 'application/octet-stream' },
    body: new Uint8Array(Buffer.concat([head, len, photo])),
  };
}

const kinds: [string, string, RequestInit][] = [
  ['/predictions tensor x·2 (8×87 500 in, 4.6 MB)', '/predictions/multi_out', { method: 'POST', headers: json, body: tensorBody }],
  ['KServe v1 predict, 8 instances × 87 500', '/v1/models/multi_out:predict', { method: 'POST', headers: json, body: v1Packed }],
  ['KServe v1 predict, 10 000 instances × 60', '/v1/models/multi_out:predict', { method: 'POST', headers: json, body: v1Many }],
  ['KServe v2 infer, JSON outputs [8, 87 500] FP32', '/v2/models/multi_out/infer', { method: 'POST', headers: json, body: v2Json }],
  ['/explanations ResNet-18 JSON (3×224×224)', '/explanations/resnet-18', { method: 'PUT', body: photo }],
  ['KServe v2 explain ResNet-18 JSON', '/v2/models/resnet-18/explain', v2BinaryImage()],
  ['/explanations ResNet-18 PNG heatmap', '/explanations/resnet-18?format=png', { method: 'PUT', body: photo }],
];

// BENCH_ONLY=<substring> measures only the kinds whose name contains it.
if (process.env.BENCH_ONLY) kinds.splice(0, kinds.length, ...kinds.filter(([name]) => name.includes(process.env.BENCH_ONLY!)));
// Warm-up: workers (JSON pool, image pool), the optimised module, the autograd module.
for (const [name, path, init] of kinds) await send(name, path, init);
console.log(`| response | status | bytes | time ms | max loop gap ms (each run) | monitorEventLoopDelay max ms |`);
console.log(`|---|---|---|---|---|---|`);
for (const [name, path, init] of kinds) {
  const runs = [];
  for (let i = 0; i < repeats; i++) runs.push(await measure(name, path, init));
  const best = Math.min(...runs.map((r) => r.gap));
  console.log(`| ${name} | ${runs[0].status} | ${runs[0].bytes} | ${Math.min(...runs.map((r) => r.ms)).toFixed(0)} | ${runs.map((r) => r.gap.toFixed(1)).join(', ')} (best ${best.toFixed(1)}) | ${runs.map((r) => r.histMax.toFixed(1)).join(', ')} |`);
}
await client.terminate();
await server.close();
process.exit(0);
