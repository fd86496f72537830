// Load generation: autocannon for throughput at a concurrency, and a precise closed-loop client
// (keep-alive, hrtime per request) for the c=1 latency the overhead figure needs: autocannon
// records latency in whole milliseconds, too coarse for a 0.5 ms budget.
import http from 'node:http';
import autocannon from 'autocannon';

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

/** Runs autocannon for `seconds` at `connections` concurrent connections; latencies in ms. */
export async function load(base: string, body: Body, connections: number, seconds: number): Promise<LoadResult> {
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
