// SIGTERM drains without losing a request (issue 9 item 3), on a real `torchd start` child process:
// readiness goes false at once while liveness stays true, drain_delay keeps serving, then the
// listener stops accepting, every response on a busy keep-alive connection says `Connection: close`,
// accepted requests finish and the process exits 0; past shutdown_timeout what remains is a 503.
//
// A request counts as lost when it was written on a connection the server had accepted and did not
// get a complete response (a reset, a hang-up, a truncated body). A new connection refused after the
// listener closed (ECONNREFUSED) never reached torchd: that is the signal a load balancer retries on.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { rm } from 'node:fs/promises';
import { fixture, makeModelStore } from '../http/_server.js';
import { RawConnection, startTorchd, until, type Torchd } from './_torchd.js';

const DIGIT = readFileSync(fixture('images/4.png'));
const JPEG = readFileSync(fixture('sample.jpg'));

interface Outcome {
  ok: number;
  /** Non-200 answers (none are expected). */
  failed: string[];
  lost: string[];
  refused: number;
  /** The `connection` header of the last 200. */
  lastConnection: string | undefined;
  okAfterSignal: number;
}

/**
 * POST once on `agent`; resolves with the status and Connection header, or rejects with the socket error.
 * With `onAccepted` the request carries `Expect: 100-continue` and its body is sent after the server's
 * 100 Continue, which Node sends when it hands the request to torchd: `onAccepted` runs then.
 */
function post(url: string, body: Buffer, agent: Agent | false, onAccepted?: () => void): Promise<{ status: number; connection?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const { hostname, port, pathname } = new URL(url);
    const headers: Record<string, string | number> = { 'content-length': body.length };
    if (onAccepted) headers.expect = '100-continue';
    const req = request({ host: hostname, port, path: pathname, method: 'POST', agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (!onAccepted) req.end(body);
    else {
      req.once('continue', () => {
        onAccepted();
        req.end(body);
      });
    }
  });
}

/** One keep-alive client sending back to back until the server refuses its connection. */
async function keepSending(url: string, body: Buffer, signalledAt: () => number | undefined, expectBody: string): Promise<Outcome> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const out: Outcome = { ok: 0, failed: [], lost: [], refused: 0, lastConnection: undefined, okAfterSignal: 0 };
  try {
    for (;;) {
      try {
        const r = await post(url, body, agent);
        if (r.status !== 200 || r.body !== expectBody) out.failed.push(`${r.status} ${r.body}`);
        else {
          out.ok++;
          out.lastConnection = r.connection;
          if (signalledAt() !== undefined) out.okAfterSignal++;
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'ECONNREFUSED' && signalledAt() !== undefined) out.refused++;
        else out.lost.push(`${e.code ?? ''} ${e.message}`);
        return out;
      }
    }
  } finally {
    agent.destroy();
  }
}

async function withTorchd(models: Parameters<typeof makeModelStore>[0], list: string, props: Record<string, string>, fn: (s: Torchd) => Promise<void>) {
  const store = await makeModelStore(models);
  const server = await startTorchd(store, list, props);
  try {
    await fn(server);
  } finally {
    await server.dispose();
    await rm(store, { recursive: true, force: true });
  }
}

test('8 keep-alive clients sending continuously + SIGTERM: no request lost, Connection: close, exit 0 well under the timeout', async (t) => {
  await withTorchd(['mnist'], 'mnist=mnist.mar', { shutdown_timeout: '30' }, async (server) => {
    let signalledAt: number | undefined;
    const url = `${server.inference}/predictions/mnist`;
    const counts = Array.from({ length: 8 }, () => 0);
    const clients = counts.map((_, i) =>
      keepSending(url, DIGIT, () => signalledAt, '4').finally(() => (counts[i] = -1)),
    );
    // Every client is in its send loop on a warm keep-alive connection before the signal.
    await until(() => server.lines.filter((l) => l.msg === 'request').length >= 80, 60_000, '80 answered requests');
    signalledAt = Date.now();
    server.child.kill('SIGTERM');
    const outcomes = await Promise.all(clients);
    const exit = await server.exited;

    for (const [i, o] of outcomes.entries()) {
      t.deepEqual(o.lost, [], `client ${i}: requests lost`);
      t.deepEqual(o.failed, [], `client ${i}: non-200 answers`);
      t.is(o.refused, 1, `client ${i} ends on a refused new connection`);
      // The server said it was closing the connection on the last answer it gave this client.
      t.is(o.lastConnection, 'close', `client ${i}: last answer's Connection header`);
    }
    t.true(outcomes.reduce((n, o) => n + o.ok, 0) >= 80);
    t.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, server.stderr());
    t.true(exit.at - signalledAt < 10_000, `exit took ${exit.at - signalledAt} ms (shutdown_timeout 30 s)`);
    const stopped = server.lines.find((l) => l.msg === 'stopped');
    t.like(stopped, { forced: false });
  });
});

test('32 ResNet-18 requests in flight + SIGTERM: 32 × 200', async (t) => {
  await withTorchd(['resnet-18'], 'resnet-18=resnet-18.mar', {}, async (server) => {
    const url = `${server.inference}/predictions/resnet-18`;
    // One connection each; every request accepted by torchd before the signal (a connection still in
    // the kernel's accept queue when the listener closes is refused by the kernel, not torchd's to lose).
    let accepted = 0;
    const answers = Array.from({ length: 32 }, () => post(url, JPEG, false, () => accepted++));
    await until(() => accepted === 32, 60_000, 'all 32 requests accepted');
    const describe = async () => {
      const r = await fetch(`${server.management}/models/resnet-18`);
      const [d] = (await r.json()) as { pendingRequests?: number; runningRequests?: number; jobQueueStatus?: { pendingRequests: number } }[];
      return d;
    };
    // The server has them: decoding, queued or running (the queue holds the later ones: 1 worker).
    await until(async () => {
      const d = await describe();
      return (d.jobQueueStatus?.pendingRequests ?? d.pendingRequests ?? 0) >= 4;
    }, 60_000, 'ResNet-18 requests queued');
    const signalledAt = Date.now();
    server.child.kill('SIGTERM');
    const results = await Promise.allSettled(answers);
    const exit = await server.exited;
    const statuses = results.map((r) => (r.status === 'fulfilled' ? r.value.status : `${(r.reason as Error).message}`));
    t.deepEqual(statuses, Array.from({ length: 32 }, () => 200), `exit ${exit.code ?? exit.signal}; stderr: ${server.stderr().slice(-2000)}`);
    for (const r of results) if (r.status === 'fulfilled') t.is(Object.keys(JSON.parse(r.value.body) as object).length, 5);
    t.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, server.stderr());
    t.like(server.lines.find((l) => l.msg === 'stopped'), { forced: false });
    t.true(exit.at - signalledAt < 30_000);
  });
});

test('readiness false at once, liveness true, drain_delay serves on; an idle keep-alive connection reused during the drain gets a clean answer, an unused one a clean close', async (t) => {
  await withTorchd(['mnist'], 'mnist=mnist.mar', { drain_delay: '1.5', shutdown_timeout: '30' }, async (server) => {
    const reused = new RawConnection(server.inference);
    const unused = new RawConnection(server.inference);
    const slow = new RawConnection(server.inference);
    for (const c of [reused, unused]) t.is((await c.send('GET', '/ping')).status, 200);
    // An accepted request whose body is still arriving keeps the drain busy for as long as this test wants.
    // (Node answers `Expect: 100-continue` when it hands the request to torchd: accepted.)
    const slowAnswer = slow.send('POST', '/predictions/mnist', DIGIT, { Expect: '100-continue' }, 10);
    await slow.accepted();

    server.child.kill('SIGTERM');
    await server.waitForLog('draining: readiness is false');
    // During drain_delay: not ready, still live, still serving, still accepting.
    const ping = await reused.send('GET', '/ping');
    t.is(ping.status, 503);
    t.deepEqual(JSON.parse(ping.body), { status: 'Unhealthy' });
    t.not(ping.headers.connection, 'close', 'keep-alive connections stay open during the drain delay');
    const ready = await reused.send('GET', '/v2/health/ready');
    t.is(ready.status, 503);
    t.deepEqual(JSON.parse(ready.body), { ready: false });
    const live = await reused.send('GET', '/v2/health/live');
    t.is(live.status, 200);
    t.deepEqual(JSON.parse(live.body), { live: true });
    const during = await reused.send('POST', '/predictions/mnist', DIGIT);
    t.is(during.status, 200);
    t.is(during.body, '4');
    const late = new RawConnection(server.inference);
    t.is((await late.send('GET', '/v2/health/live')).status, 200, 'new connections are accepted during the delay');
    late.close();

    await server.waitForLog('draining: no new connections');
    await t.throwsAsync(fetch(`${server.inference}/ping`), undefined, 'the listener is closed');
    // The idle connection stayed open while a request was in flight; reusing it gets an answer that
    // says the connection ends here, then a clean FIN.
    t.false(unused.endedCleanly);
    const afterDelay = await reused.send('POST', '/predictions/mnist', DIGIT);
    t.is(afterDelay.status, 200);
    t.is(afterDelay.body, '4');
    t.is(afterDelay.headers.connection, 'close');
    await reused.ended;
    t.true(reused.endedCleanly, String(reused.error));

    slow.finishBody(DIGIT, 10);
    const answered = await slowAnswer;
    t.is(answered.status, 200);
    t.is(answered.body, '4');
    t.is(answered.headers.connection, 'close');
    await slow.ended;
    t.true(slow.endedCleanly, String(slow.error));

    // Nothing in flight any more: the unused idle connection is closed with a FIN, not a reset.
    await unused.ended;
    t.true(unused.endedCleanly, String(unused.error));
    const exit = await server.exited;
    t.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, server.stderr());
  });
});

test('past shutdown_timeout an unfinished request gets 503 (not a reset) and torchd exits 0', async (t) => {
  await withTorchd(['mnist'], 'mnist=mnist.mar', { shutdown_timeout: '1.5' }, async (server) => {
    const slow = new RawConnection(server.inference);
    const idle = new RawConnection(server.inference);
    t.is((await idle.send('GET', '/ping')).status, 200);
    // Accepted (headers read), body never completed: it cannot finish before the timeout.
    const answer = slow.send('POST', '/predictions/mnist', DIGIT, { Expect: '100-continue' }, 10);
    await slow.accepted();
    const signalledAt = Date.now();
    server.child.kill('SIGTERM');
    const r = await answer;
    t.is(r.status, 503);
    t.deepEqual(JSON.parse(r.body), {
      code: 503,
      type: 'ServiceUnavailableException',
      message: 'torchd is shutting down: shutdown_timeout (1.5 s) passed before this request was answered',
    });
    t.is(r.headers.connection, 'close');
    t.is(r.headers['retry-after'], '1');
    const waited = Date.now() - signalledAt;
    t.true(waited >= 1400 && waited < 5000, `answered after ${waited} ms`);
    await slow.ended;
    t.true(slow.endedCleanly, String(slow.error));
    await idle.ended;
    t.true(idle.endedCleanly, String(idle.error));
    const exit = await server.exited;
    t.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, server.stderr());
    t.like(server.lines.find((l) => l.msg === 'stopped'), { forced: true });
  });
});
