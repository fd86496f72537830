// `torchd start` as users run it: a child process (bin/torchd.js) that serves /ping, logs JSON lines,
// and exits 0 on SIGTERM after finishing; a bad config exits non-zero with the key named.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeModelStore } from '../http/_server.js';
import { spawnTorchd } from '../_torchd-child.js';

test('torchd start answers /ping, torchd one line per request, exits 0 on SIGTERM', async (t) => {
  const store = await makeModelStore(['mnist']);
  const cwd = await mkdtemp(join(tmpdir(), 'torchd-cli-'));
  const props = join(cwd, 'config.properties');
  await writeFile(props, 'job_queue_size=10\nnumber_of_netty_threads=4\ngrpc_inference_port=0\ngrpc_management_port=0\n');
  const torchd = spawnTorchd(
    ['start', '--model-store', store, '--models', 'mnist=mnist.mar', '--ts-config', props,
      '--inference-address', 'http://127.0.0.1:0', '--management-address', 'http://127.0.0.1:0',
      '--metrics-address', 'http://127.0.0.1:0', '--foreground'],
    { cwd },
  );
  try {
    const ready = await torchd.waitFor('torchd ready');
    const addresses = ready.addresses as { inference: string; management: string; metrics: string };
    t.regex(addresses.inference, /^http:\/\/127\.0\.0\.1:\d+$/);
    t.deepEqual(ready.models, ['mnist']);
    const ignored = await torchd.waitFor('config.properties keys torchd does not use were ignored');
    t.deepEqual(ignored.keys, ['number_of_netty_threads']);

    const ping = await fetch(`${addresses.inference}/ping`, { headers: { 'x-request-id': 'cli-test-1' } });
    t.is(ping.status, 200);
    t.deepEqual(await ping.json(), { status: 'Healthy' });
    const digit = await fetch(`${addresses.inference}/predictions/mnist`, {
      method: 'PUT',
      body: readFileSync(fileURLToPath(new URL('../fixtures/models/images/4.png', import.meta.url))),
    });
    t.is(await digit.json(), 4);

    const requestLine = await torchd.waitFor('request');
    t.like(requestLine, { id: 'cli-test-1', method: 'GET', route: 'GET /ping', status: 200 });
    t.is(typeof requestLine.ms, 'number');
    await new Promise((r) => setTimeout(r, 100));
    t.truthy(torchd.lines.find((l) => l.msg === 'request' && l.model === 'mnist' && l.version === '1.0' && l.status === 200));

    torchd.child.kill('SIGTERM');
    const { code, signal } = await torchd.exited;
    t.is(signal, null, torchd.stderr());
    t.is(code, 0, torchd.stderr());
    t.truthy(torchd.lines.find((l) => l.msg === 'stopped'));
    await t.throwsAsync(fetch(`${addresses.inference}/ping`), undefined, 'no longer listening');
  } finally {
    await torchd.kill();
    await rm(store, { recursive: true, force: true });
    await rm(cwd, { recursive: true, force: true });
  }
});

test('a bad config value exits 2 and names the key and value', async (t) => {
  const cwd = await mkdtemp(join(tmpdir(), 'torchd-cli-'));
  const props = join(cwd, 'config.properties');
  await writeFile(props, 'model_store=/nonexistent\nmax_request_size=lots\n');
  const torchd = spawnTorchd(['start', '--ts-config', props], { cwd });
  const { code } = await torchd.exited;
  t.is(code, 2);
  t.regex(torchd.stderr(), /max_request_size="lots" is invalid: expected a whole number of bytes >= 1/);
  await rm(cwd, { recursive: true, force: true });
});
