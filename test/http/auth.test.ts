// Token authorization: the key file (TorchServe's layout, mode 0600) and the 401 for missing/wrong keys.
import test from 'ava';
import express from 'express';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { requireToken, setupTokenAuth } from '../../src/http/auth.js';
import { errorMiddleware, requestId } from '../../src/http/errors.js';

const logger = pino({ level: 'silent' });

test('setupTokenAuth writes both keys to a 0600 key file in TorchServe\'s layout, fresh each start', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'torchd-auth-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'nested', 'key_file.json');
  const keys = await setupTokenAuth({ keyFile }, logger);
  t.regex(keys.inferenceKey, /^[A-Za-z0-9_-]{32}$/);
  t.regex(keys.managementKey, /^[A-Za-z0-9_-]{32}$/);
  t.not(keys.inferenceKey, keys.managementKey);
  const content = JSON.parse(await readFile(keyFile, 'utf8'));
  t.deepEqual(content, { management: { key: keys.managementKey }, inference: { key: keys.inferenceKey } });
  t.is((await stat(keyFile)).mode & 0o777, 0o600);

  // A pre-existing, world-readable file is replaced by a 0600 one with new keys.
  await writeFile(keyFile, 'old', { mode: 0o644 });
  const again = await setupTokenAuth({ keyFile }, logger);
  t.not(again.inferenceKey, keys.inferenceKey);
  t.is((await stat(keyFile)).mode & 0o777, 0o600);
  t.is(JSON.parse(await readFile(keyFile, 'utf8')).inference.key, again.inferenceKey);
});

async function serve(key: string): Promise<{ url: string; close: () => void }> {
  const app = express();
  app.use(requestId);
  app.use(requireToken(key));
  app.get('/ok', (_req, res) => res.json({ ok: true }));
  app.use(errorMiddleware(1000));
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

test('requireToken: 401 InvalidKeyException without the right bearer key, pass-through with it', async (t) => {
  const key = 'k3y-For-Tests_0123456789abcdefgh';
  const s = await serve(key);
  t.teardown(s.close);
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['no header', {}, /missing "Authorization: Bearer <key>" header/],
    ['wrong key', { Authorization: 'Bearer nope' }, /invalid key/],
    ['wrong key of the same length', { Authorization: `Bearer ${key.slice(0, -1)}X` }, /invalid key/],
    ['other scheme', { Authorization: `Basic ${key}` }, /missing/],
    ['key without scheme', { Authorization: key }, /missing/],
  ];
  for (const [what, headers, message] of cases) {
    const r = await fetch(`${s.url}/ok`, { headers });
    t.is(r.status, 401, what);
    t.is(r.headers.get('content-type'), 'application/json; charset=utf-8', what);
    t.is(r.headers.get('www-authenticate'), 'Bearer', what);
    const body = await r.json();
    t.is(body.code, 401, what);
    t.is(body.type, 'InvalidKeyException', what);
    t.regex(body.message, message, what);
  }
  for (const scheme of ['Bearer', 'bearer']) {
    const ok = await fetch(`${s.url}/ok`, { headers: { Authorization: `${scheme} ${key}` } });
    t.is(ok.status, 200);
    t.deepEqual(await ok.json(), { ok: true });
  }
});

test('the whole server with token auth on: each listener takes only its own key; /ping stays open', async (t) => {
  const { startServer } = await import('../../src/server.js');
  const { makeEnv } = await import('../fixtures/v2/servers.js');
  const { runArchive } = await import('../../src/archiver/index.js');
  const env = await makeEnv();
  t.teardown(env.cleanup);
  await runArchive({ modelName: 'echo', version: '1', serializedFile: join(import.meta.dirname, '..', 'fixtures', 'v2', 'echo.pt'), handler: 'tensor', exportPath: env.deps.config.modelStore });
  const keyFile = join(env.root, 'keys', 'key_file.json');
  const server = await startServer({ ...env.deps.config, enableTokenAuth: true, keyFile }, { logger });
  t.teardown(() => server.close(1000));
  const { inference, management } = server.addresses;
  const keys = JSON.parse(await readFile(keyFile, 'utf8'));
  t.is(keys.inference.key, server.keys!.inferenceKey);
  t.is(keys.management.key, server.keys!.managementKey);
  t.is((await stat(keyFile)).mode & 0o777, 0o600);
  const bearer = (k: string) => ({ Authorization: `Bearer ${k}` });

  const reg = (h: Record<string, string>) => fetch(`${management}/models?url=echo.mar`, { method: 'POST', headers: h });
  t.is((await reg({})).status, 401);
  t.is((await reg(bearer(keys.inference.key))).status, 401, 'the inference key does not open the management API');
  t.is((await reg(bearer(keys.management.key))).status, 200);

  const infer = (h: Record<string, string>) => fetch(`${inference}/v2/models/echo/infer`, {
    method: 'POST', headers: h, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1], datatype: 'INT32', data: [5] }] }),
  });
  const denied = await infer({});
  t.is(denied.status, 401);
  t.like(await denied.json(), { code: 401, type: 'InvalidKeyException' });
  t.is((await infer(bearer(keys.management.key))).status, 401, 'the management key does not open the inference API');
  const ok = await infer(bearer(keys.inference.key));
  t.is(ok.status, 200);
  t.deepEqual((await ok.json()).outputs[0].data, [5]);
  t.is((await fetch(`${inference}/ping`)).status, 200);
  t.is((await fetch(`${management}/models`, { headers: bearer(keys.management.key) })).status, 200);
});

test('the whole server with token auth off: no key file, no Authorization needed', async (t) => {
  const { startServer } = await import('../../src/server.js');
  const { makeEnv } = await import('../fixtures/v2/servers.js');
  const env = await makeEnv();
  t.teardown(env.cleanup);
  const keyFile = join(env.root, 'key_file.json');
  const server = await startServer({ ...env.deps.config, enableTokenAuth: false, keyFile }, { logger });
  t.teardown(() => server.close(1000));
  t.is(server.keys, undefined);
  await t.throwsAsync(stat(keyFile), { code: 'ENOENT' });
  t.deepEqual(await (await fetch(`${server.addresses.management}/models`)).json(), { models: [] });
  t.deepEqual(await (await fetch(`${server.addresses.inference}/v2/health/live`)).json(), { live: true });
});
