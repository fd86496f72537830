// Shared by the lifecycle tests: runs `torchd start` as a child process (bin/torchd.js, real signals)
// over a model store on free loopback ports, and speaks raw HTTP/1.1 over one socket so that a test
// sees exactly what happens to a keep-alive connection (Connection headers, FIN, reset).
// Not a test file (no .test. in its name).
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnTorchd, type TorchdChild } from '../_torchd-child.js';

export interface Torchd extends TorchdChild {
  inference: string;
  management: string;
  /** Resolves with the first log line whose msg starts with `prefix`. */
  waitForLog(prefix: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGKILL if still running; removes the working folder. */
  dispose(): Promise<void>;
}

/** Starts torchd on `store` with `models` (the --models list) and config.properties `properties`. */
export async function startTorchd(store: string, models: string, properties: Record<string, string> = {}): Promise<Torchd> {
  const cwd = await mkdtemp(join(tmpdir(), 'torchd-life-'));
  const props = join(cwd, 'config.properties');
  // gRPC listeners on free ports too, so parallel test runs never fight over 7070/7071.
  const all = { grpc_inference_port: '0', grpc_management_port: '0', ...properties };
  await writeFile(props, Object.entries(all).map(([k, v]) => `${k}=${v}\n`).join(''));
  const torchd = spawnTorchd(
    ['start', '--model-store', store, '--models', models, '--ts-config', props,
      '--inference-address', 'http://127.0.0.1:0', '--management-address', 'http://127.0.0.1:0',
      '--metrics-address', 'http://127.0.0.1:0'],
    { cwd },
  );
  const waitForLog = (prefix: string, timeoutMs = 60_000) => torchd.waitFor(prefix, { timeoutMs, prefix: true });
  const dispose = async () => {
    await torchd.kill();
    await rm(cwd, { recursive: true, force: true });
  };
  try {
    const ready = await waitForLog('torchd ready');
    const addresses = ready.addresses as { inference: string; management: string };
    return { ...torchd, inference: addresses.inference, management: addresses.management, waitForLog, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * One HTTP/1.1 connection driven by hand. `ended` resolves when the server closes it cleanly (FIN);
 * `error` holds a reset or any other socket error.
 */
export class RawConnection {
  readonly socket: Socket;
  private buffer = Buffer.alloc(0);
  private pending: ((r: RawResponse) => void)[] = [];
  private failWaiters: ((e: Error) => void)[] = [];
  private continueWaiters: (() => void)[] = [];
  private continued = 0;
  /** A reset or other socket error, if one happened. */
  error: Error | undefined;
  /** The server closed the connection with a FIN and no error came before it. */
  endedCleanly = false;
  readonly ended: Promise<void>;
  readonly connected: Promise<void>;

  constructor(url: string) {
    const { hostname, port } = new URL(url);
    this.socket = connect(Number(port), hostname);
    this.connected = once(this.socket, 'connect').then(() => undefined);
    this.socket.on('data', (d: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      this.parse();
    });
    this.socket.on('error', (e) => {
      this.error = e;
      for (const f of this.failWaiters.splice(0)) f(e);
    });
    this.ended = new Promise((resolve) => {
      this.socket.on('end', () => {
        this.endedCleanly = this.error === undefined;
        for (const f of this.failWaiters.splice(0)) f(new Error('connection closed by the server before a response'));
        resolve();
      });
      this.socket.on('close', () => resolve());
    });
  }

  /** Writes a request (headers + body); `partialBody` sends only that many body bytes for now. */
  send(method: string, path: string, body?: Buffer, headers: Record<string, string> = {}, partialBody?: number): Promise<RawResponse> {
    const head = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: keep-alive'];
    for (const [k, v] of Object.entries(headers)) head.push(`${k}: ${v}`);
    if (body) head.push(`Content-Length: ${body.length}`);
    const response = new Promise<RawResponse>((resolve, reject) => {
      this.pending.push(resolve);
      this.failWaiters.push(reject);
    });
    this.socket.write(`${head.join('\r\n')}\r\n\r\n`);
    if (body) this.socket.write(partialBody === undefined ? body : body.subarray(0, partialBody));
    return response;
  }

  /** Resolves once the server has sent `100 Continue` (send with `Expect: 100-continue`). */
  accepted(): Promise<void> {
    if (this.continued > 0) return Promise.resolve();
    return new Promise((resolve) => this.continueWaiters.push(resolve));
  }

  /** The rest of a body started with `partialBody`. */
  finishBody(body: Buffer, from: number): void {
    this.socket.write(body.subarray(from));
  }

  close(): void {
    this.socket.destroy();
  }

  private parse(): void {
    for (;;) {
      const headEnd = this.buffer.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const headLines = this.buffer.subarray(0, headEnd).toString('latin1').split('\r\n');
      const status = Number(headLines[0].split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const l of headLines.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      // torchd always sends Content-Length (Express bodies are buffered).
      if (status >= 100 && status < 200) {
        // An interim answer (100 Continue: the server has accepted the request and wants its body).
        this.buffer = this.buffer.subarray(headEnd + 4);
        this.continued++;
        for (const w of this.continueWaiters.splice(0)) w();
        continue;
      }
      const length = Number(headers['content-length'] ?? 0);
      if (this.buffer.length < headEnd + 4 + length) return;
      const body = this.buffer.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8');
      this.buffer = this.buffer.subarray(headEnd + 4 + length);
      this.failWaiters.shift();
      this.pending.shift()?.({ status, headers, body });
    }
  }
}

/** Polls `fn` every 20 ms until it returns true (or throws after `timeoutMs`). */
export async function until(fn: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
