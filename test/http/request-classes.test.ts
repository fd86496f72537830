// node:http builds each request and response with the Express app's own prototypes (src/http/app.ts
// requestClassesFor, passed to http.createServer by createDrainableHttpServer), so Express's per-request
// setPrototypeOf changes nothing; everything Express and node:http do with them must stay as it was.
import test from 'ava';
import express from 'express';
import { IncomingMessage, ServerResponse, request } from 'node:http';
import type { AddressInfo } from 'node:net';

import { requestClassesFor } from '../../src/http/app.js';
import { createDrainableHttpServer } from '../../src/http/connections.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function send(port: number, path: string, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('requests and responses start with the app\'s prototypes, and Express serves them as before', async (t) => {
  const app = express();
  app.use(express.json());
  app.get('/q', (req, res) => {
    res.set('x-seen', req.get('host') ?? '');
    res.json({ x: req.query.x ?? null, path: req.path, xhr: req.xhr, app: req.app === app && res.app === app });
  });
  app.post('/echo', (req, res) => res.status(201).json(req.body));
  app.use((_req, res) => res.status(404).type('text').send('none here'));
  const seen: boolean[] = [];
  const listener = createDrainableHttpServer(
    (req, res) => {
      // Before Express's app.handle: what node:http built.
      seen.push(Object.getPrototypeOf(req) === app.request && Object.getPrototypeOf(res) === app.response && req instanceof IncomingMessage && res instanceof ServerResponse);
      app(req as never, res as never);
    },
    { name: 'test', ...requestClassesFor(app) },
  );
  await new Promise<void>((resolve) => listener.server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => listener.drain());
  const { port } = listener.server.address() as AddressInfo;

  const q = await send(port, '/q?x=7');
  t.is(q.status, 200);
  t.deepEqual(JSON.parse(q.body), { x: '7', path: '/q', xhr: false, app: true });
  t.is(q.headers['x-seen'], `127.0.0.1:${port}`);
  t.is(q.headers['content-type'], 'application/json; charset=utf-8');
  const echo = await send(port, '/echo', JSON.stringify({ a: [1, 2] }));
  t.is(echo.status, 201);
  t.deepEqual(JSON.parse(echo.body), { a: [1, 2] });
  const missing = await send(port, '/nope');
  t.is(missing.status, 404);
  t.is(missing.body, 'none here');
  t.deepEqual(seen, [true, true, true]);
  t.is(requestClassesFor(app), requestClassesFor(app), 'once per app: the prototypes are not stacked again');
});

test('without the classes node:http builds its own, as before (what Express then re-prototypes)', async (t) => {
  const app = express();
  app.get('/', (_req, res) => res.json({ ok: true }));
  let own: boolean | undefined;
  const listener = createDrainableHttpServer(
    (req, res) => {
      own = Object.getPrototypeOf(req) === IncomingMessage.prototype && Object.getPrototypeOf(res) === ServerResponse.prototype;
      app(req as never, res as never);
    },
    { name: 'test' },
  );
  await new Promise<void>((resolve) => listener.server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => listener.drain());
  const { port } = listener.server.address() as AddressInfo;
  const r = await send(port, '/');
  t.is(r.status, 200);
  t.deepEqual(JSON.parse(r.body), { ok: true });
  t.true(own);
});
