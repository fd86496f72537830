// Load generation: wrk for throughput at a concurrency (autocannon where wrk is absent), and a precise
// closed-loop client (keep-alive, hrtime per request) for the c=1 latency the overhead figure needs.
// wrk is C on one thread: on 2 cores autocannon (JavaScript, in the bench's own process) took a large share
// of the CPU the servers compete for (NOTES.md §32). autocannon records latency in whole milliseconds.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import autocannon from 'autocannon';

const run = promisify(execFile);
const WRK = ['/usr/bin/wrk', '/usr/local/bin/wrk'].find((p) => existsSync(p));

/** Which load generator load() uses, and why (printed in the report). */
export const loadGenerator = WRK ? `wrk (${WRK}, 1 thread)` : 'autocannon (wrk is not installed: apt-get install wrk)';

export interface Body {
  path: string;
  method?: 'POST' | 'PUT';
  headers: Record<string, string>;
  body: Buffer;
}

export interface LoadResult {
  connections: number;
  seconds: number;
  requests: number;
  reqPerSec: number;
  p50: number;
  p90: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/** Loads `base + body.path` for `seconds` at `connections` concurrent keep-alive connections; latencies in ms. */
export async function load(base: string, body: Body, connections: number, seconds: number): Promise<LoadResult> {
  return WRK ? loadWrk(WRK, base, body, connections, seconds) : loadAutocannon(base, body, connections, seconds);
}

// wrk sends the same request on every connection; done() prints one JSON line (latencies in µs).
const WRK_SCRIPT = `
local f = assert(io.open(os.getenv("TORCHD_BENCH_BODY"), "rb"))
wrk.method = os.getenv("TORCHD_BENCH_METHOD")
wrk.body = f:read("*all")
f:close()
for k, v in string.gmatch(os.getenv("TORCHD_BENCH_HEADERS"), "([^=\\n]+)=([^\\n]*)") do wrk.headers[k] = v end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"status":%d,"errors":%d,"p50":%d,"p90":%d,"p99":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
`;

async function loadWrk(wrk: string, base: string, body: Body, connections: number, seconds: number): Promise<LoadResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'torchd-wrk-'));
  try {
    const script = path.join(dir, 'post.lua');
    const bodyFile = path.join(dir, 'body');
    writeFileSync(script, WRK_SCRIPT);
    writeFileSync(bodyFile, body.body);
    const env = {
      ...process.env,
      TORCHD_BENCH_BODY: bodyFile,
      TORCHD_BENCH_METHOD: body.method ?? 'POST',
      TORCHD_BENCH_HEADERS: Object.entries(body.headers).map(([k, v]) => `${k}=${v}`).join('\n'),
    };
    const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '60s', '-s', script, base + body.path];
    const { stdout } = await run(wrk, args, { env, maxBuffer: 1 << 20 });
    const line = stdout.split('\n').find((l) => l.startsWith('WRK '));
    if (!line) throw new Error(`wrk printed no summary:\n${stdout}`);
    const r = JSON.parse(line.slice(4)) as { requests: number; duration_us: number; status: number; errors: number; p50: number; p90: number; p99: number };
    const secs = r.duration_us / 1e6;
    const ok = r.requests - r.status;
    return { connections, seconds: secs, requests: ok, reqPerSec: ok / secs, p50: r.p50 / 1000, p90: r.p90 / 1000, p99: r.p99 / 1000, non2xx: r.status, errors: r.errors };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function loadAutocannon(base: string, body: Body, connections: number, seconds: number): Promise<LoadResult> {
  const r = await autocannon({
    url: base + body.path,
    method: body.method ?? 'POST',
    headers: body.headers,
    body: body.body,
    connections,
    duration: seconds,
    timeout: 60,
  });
  return {
    connections,
    seconds: r.duration,
    requests: r['2xx'],
    reqPerSec: r['2xx'] / r.duration,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors,
  };
}

export interface ProbeResult {
  requests: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

export function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** One request after another on one keep-alive connection, timed with hrtime (ms, µs precision). */
export async function probe(base: string, body: Body, count: number, warmup = 20): Promise<ProbeResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const times: number[] = [];
  try {
    for (let i = 0; i < warmup + count; i++) {
      const t0 = process.hrtime.bigint();
      const status = await send(base, body, agent);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (status < 200 || status >= 300) throw new Error(`probe got status ${status} from ${body.path}`);
      if (i >= warmup) times.push(ms);
    }
  } finally {
    agent.destroy();
  }
  const sorted = [...times].sort((a, b) => a - b);
  return {
    requests: times.length,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    mean: times.reduce((a, b) => a + b, 0) / times.length,
  };
}

/** Sends one request and drains the response; resolves with the status code. */
export function send(base: string, body: Body, agent?: http.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      base + body.path,
      { method: body.method ?? 'POST', headers: { ...body.headers, 'content-length': String(body.body.length) }, agent },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body.body);
  });
}

/** GET a URL and parse JSON (status and body). */
export async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body };
}
