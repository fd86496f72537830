// The largest answers the API gives within its bounds, against torchd in a child process: a tensor model's x·2 of a
// 5 MB request as 13 MB of JSON (KServe v2 JSON outputs, KServe v1 predictions) and a ResNet-18 explanation as a PNG
// heatmap. Each answer is checked value by value against a reference computed here, while /ping is polled: the large
// tensors' JSON text and the heatmap are encoded on the response encoder thread and the body is written in 1 MiB
// pieces, so the server's event loop stays free (it was held 40–50 ms by a v2 answer and 25–45 ms by a heatmap,
// bench/NOTES.md §31).
import test, { type ExecutionContext } from 'ava';
import { cpus, loadavg } from 'node:os';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import sharp from 'sharp';
import { renderHeatmap } from '../../src/handlers/heatmap.js';
import { LOOPBACK_HTTP_ONLY_ENV, spawnTorchd, type TorchdChild } from '../_torchd-child.js';
import { fixture, makeModelStore } from '../http/_server.js';
import { startPinger } from './_pinger.js';

let torchd: TorchdChild;
let url: string;
let metricsUrl: string;
let store: string;

test.before(async () => {
  store = await makeModelStore(['multi_out', 'resnet-18']);
  torchd = spawnTorchd(['start', `--model-store=${store}`, '--models=multi_out=multi_out.mar,resnet-18=resnet-18.mar'], {
    env: {
      ...process.env,
      ...LOOPBACK_HTTP_ONLY_ENV,
    },
  });
  const addresses = (await torchd.waitFor('torchd ready', 120_000)).addresses as { inference: string; metrics: string };
  url = addresses.inference;
  metricsUrl = addresses.metrics;
});
test.after.always(async () => {
  if (torchd && torchd.child.exitCode === null) torchd.child.kill('SIGKILL');
  if (store) await rm(store, { recursive: true, force: true });
});

/**
 * The server's own longest event-loop delay since the last scrape, in ms: prom-client's nodejs_eventloop_lag_max_seconds
 * (perf_hooks.monitorEventLoopDelay at 10 ms resolution inside torchd, reset by each scrape). An idle loop reads
 * ~10 ms (one timer interval); a block of B ms reads up to B + 10.
 */
async function loopLagMaxMs(): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text);
  if (!m) throw new Error('nodejs_eventloop_lag_max_seconds missing from /metrics');
  return Number(m[1]) * 1000;
}

/**
 * Longest loop delay allowed, as the server reads it: ~20 ms of work at a time (issue 8), plus the 10 ms resolution,
 * plus 5 ms for the loop's thread waiting for a core that a CI neighbour holds. Before the encoder thread these
 * answers read 58–104 ms (bench/NOTES.md §31).
 */
const LAG_BOUND_MS = 35;

/**
 * Slowest /ping allowed while a large answer is produced, as amplification.test.ts allows: besides the server's loop,
 * a ping waits for CPU that the forward's intra-op threads and the encoder thread take on a 2-core machine (a
 * heatmap's /ping read 76–85 ms with the server's loop delay at 14–16 ms), so the loop bound is the server's own figure.
 */
const PING_BOUND_MS = 100;

// 8 rows of 87 500 numbers with three decimals: ~5 MB of JSON (max_request_size is 6.5 MB), 700 000 values.
const ROWS = 8;
const COLS = 87_500;
const x = Float32Array.from({ length: ROWS * COLS }, (_, i) => ((i * 7919) % 20011) / 1000 - 10);
const text = (i: number) => (((i * 7919) % 20011) / 1000 - 10).toFixed(3);
const rowsText = Array.from({ length: ROWS }, (_, r) => `[${Array.from({ length: COLS }, (_, c) => text(r * COLS + c)).join(',')}]`);

/** x·2 in float32 (exact: doubling a float32 is), the reference for every x·2 answer. */
const twice = (i: number) => x[i] * 2;

/**
 * Sends `send` up to 3 times while the server's loop delay or /ping is over its bound (other processes share these
 * cores), checking the answer every time with `check`; asserts the best of each unless the machine is oversubscribed
 * (load per core > 1.5), the convention of amplification.test.ts.
 */
async function answeredWhileLoopFree(t: ExecutionContext, what: string, send: () => Promise<Response>, check: (res: Response) => Promise<void>): Promise<void> {
  let bestPing = Infinity;
  let bestLag = Infinity;
  for (let attempt = 0; attempt < 3 && (bestPing >= PING_BOUND_MS || bestLag >= LAG_BOUND_MS); attempt++) {
    await loopLagMaxMs(); // resets the server's histogram
    const pinger = startPinger(url);
    const t0 = performance.now();
    const res = await send();
    await check(res);
    const ms = performance.now() - t0;
    const lag = await loopLagMaxMs();
    const ping = await pinger.stop();
    t.log(`${what}: ${res.status} in ${ms.toFixed(0)} ms, server loop delay max ${lag.toFixed(1)} ms, /ping max ${ping.toFixed(1)} ms`);
    bestPing = Math.min(bestPing, ping);
    bestLag = Math.min(bestLag, lag);
  }
  const loadPerCore = loadavg()[0] / cpus().length;
  if (loadPerCore > 1.5) {
    t.log(`loop delay ${bestLag.toFixed(1)} ms and /ping max ${bestPing.toFixed(1)} ms not asserted: machine oversubscribed (load per core ${loadPerCore.toFixed(1)} > 1.5)`);
  } else {
    t.true(bestLag < LAG_BOUND_MS, `server loop delay max ${bestLag} ms`);
    t.true(bestPing < PING_BOUND_MS, `/ping max ${bestPing} ms`);
  }
}

test.serial('KServe v2 JSON outputs of a 700 000-value x·2 (13 MB): every value exact, /ping keeps answering', async (t) => {
  const body = `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [${ROWS}, ${COLS}], "data": [${rowsText.join(',')}]}]}`;
  t.true(body.length < 6_553_500);
  const send = () => fetch(`${url}/v2/models/multi_out/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  // The first large request starts the server's JSON and encoder threads and compiles the paths (a one-time 30–40 ms
  // on the loop); what is bounded is every request after it.
  t.is((await send()).status, 200);
  await answeredWhileLoopFree(t, 'v2 JSON x·2', send, async (res) => {
    t.is(res.status, 200);
    t.is(res.headers.get('content-type'), 'application/json; charset=utf-8');
    const answer = (await res.json()) as { model_name: string; outputs: { name: string; datatype: string; shape: number[]; data: number[] }[] };
    t.is(answer.model_name, 'multi_out');
    t.deepEqual(answer.outputs.map((o) => [o.name, o.datatype, o.shape]), [
      ['output0', 'FP32', [ROWS, COLS]], ['output1.sum', 'FP32', [ROWS]], ['output1.max', 'FP32', [ROWS]],
    ]);
    const data = answer.outputs[0].data;
    t.is(data.length, ROWS * COLS);
    let mismatches = 0;
    for (let i = 0; i < data.length; i++) if (data[i] !== twice(i)) mismatches++;
    t.is(mismatches, 0);
    for (let r = 0; r < ROWS; r++) t.is(answer.outputs[2].data[r], Math.max(...x.subarray(r * COLS, (r + 1) * COLS)));
  });
});

test.serial('KServe v1 predictions of 8 instances × 87 500 (x·2 per instance, 13 MB): every value exact, /ping keeps answering', async (t) => {
  const body = `{"instances": [${rowsText.join(',')}]}`;
  const send = () => fetch(`${url}/v1/models/multi_out:predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  await answeredWhileLoopFree(t, 'v1 x·2', send, async (res) => {
    t.is(res.status, 200);
    const { predictions } = (await res.json()) as { predictions: [number[], { sum: number; max: number }][] };
    t.is(predictions.length, ROWS);
    let mismatches = 0;
    for (let r = 0; r < ROWS; r++) {
      const [row, { max }] = predictions[r];
      t.is(row.length, COLS);
      for (let c = 0; c < COLS; c++) if (row[c] !== twice(r * COLS + c)) mismatches++;
      t.is(max, Math.max(...x.subarray(r * COLS, (r + 1) * COLS)));
    }
    t.is(mismatches, 0);
  });
});

test.serial('a ResNet-18 heatmap (rendered on the encoder thread) is the PNG renderHeatmap makes of the JSON attributions; /ping keeps answering', async (t) => {
  const photo = new Uint8Array(readFileSync(fixture('sample.jpg')));
  const steps = 4;
  const attributionsRes = await fetch(`${url}/explanations/resnet-18?n_steps=${steps}`, { method: 'PUT', body: photo });
  t.is(attributionsRes.status, 200);
  const nested = (await attributionsRes.json()) as number[][][];
  t.deepEqual([nested.length, nested[0].length, nested[0][0].length], [3, 224, 224]);
  // The JSON numbers are float32 values widened to double, so Math.fround gives the tensor back bit for bit.
  const attributions = { data: Float32Array.from(nested.flat(2), Math.fround), shape: [3, 224, 224], dtype: 'float32' as const };
  const reference = await renderHeatmap({ attributions }, { overlay: false });
  const send = () => fetch(`${url}/explanations/resnet-18?n_steps=${steps}&format=png&overlay=false`, { method: 'PUT', body: photo });
  await answeredWhileLoopFree(t, 'ResNet-18 heatmap', send, async (res) => {
    t.is(res.status, 200);
    t.is(res.headers.get('content-type'), 'image/png');
    const png = Buffer.from(await res.arrayBuffer());
    const meta = await sharp(png).metadata();
    t.deepEqual([meta.width, meta.height], [224, 224]);
    t.true(png.equals(reference), `PNG of ${png.length} bytes differs from the reference's ${reference.length}`);
  });
});
