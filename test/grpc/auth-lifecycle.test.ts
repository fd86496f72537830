// Token auth over gRPC metadata (inference key on the inference port, management key on the management
// port; health, Ping and liveness/readiness open, as /ping), and shutdown: readiness goes NOT_SERVING
// first, the request in flight on a bidirectional stream is answered, then open streams end UNAVAILABLE.
import test from 'ava';
import { status as Code, type ClientDuplexStream, type ClientReadableStream } from '@grpc/grpc-js';
import { call } from '../http/_server.js';
import { clients, failure, managementClient, metadata, rpc, startGrpcServer } from './_grpc.js';

test('token auth: `authorization: Bearer <key>` metadata, the key of each port; probes open', async (t) => {
  const srv = await startGrpcServer({ enable_token_auth: 'true' });
  t.teardown(() => srv.close());
  const keys = srv.server.keys!;
  const inf = clients(srv.server.addresses.grpcInference!);
  const mgmt = managementClient(srv.server.addresses.grpcManagement!);
  const mgmtHealth = clients(srv.server.addresses.grpcManagement!);
  t.teardown(() => {
    inf.close();
    mgmt.close();
    mgmtHealth.close();
  });
  const request = { model_name: 'adder', input: { x: Buffer.from('[[1]]'), y: Buffer.from('[[2]]') } };

  const missing = await failure(rpc(inf.ts, 'Predictions', request));
  t.is(missing.code, Code.UNAUTHENTICATED);
  t.deepEqual(missing.details, { code: 401, type: 'InvalidKeyException', message: 'Token Authorization failed: missing "Authorization: Bearer <key>" header' });
  const wrong = await failure(rpc(inf.ts, 'Predictions', request, metadata({ authorization: `Bearer ${keys.managementKey}` })));
  t.is(wrong.code, Code.UNAUTHENTICATED);
  t.deepEqual(wrong.details, { code: 401, type: 'InvalidKeyException', message: 'Token Authorization failed: invalid key' });
  const ok = await rpc(inf.ts, 'Predictions', request, metadata({ authorization: `Bearer ${keys.inferenceKey}` }));
  t.deepEqual(JSON.parse(ok.prediction.toString()), [[[5]], [2]]);
  t.is((await failure(rpc(inf.v2, 'ModelMetadata', { name: 'adder' }))).code, Code.UNAUTHENTICATED);
  t.is((await failure(rpc(inf.v2, 'ModelReady', { name: 'adder' }))).code, Code.UNAUTHENTICATED);

  // Probes carry no token.
  t.deepEqual(await rpc(inf.ts, 'Ping', {}), { health: '{"status":"Healthy"}' });
  t.deepEqual(await rpc(inf.v2, 'ServerLive', {}), { live: true });
  t.deepEqual(await rpc(inf.v2, 'ServerReady', {}), { ready: true });
  t.deepEqual(await rpc(inf.health, 'Check', { service: 'adder' }), { status: 'SERVING' });
  t.deepEqual(await rpc(mgmtHealth.health, 'Check', { service: '' }), { status: 'SERVING' });

  t.is((await failure(rpc(mgmt, 'ListModels', {}, metadata({ authorization: `Bearer ${keys.inferenceKey}` })))).code, Code.UNAUTHENTICATED);
  const list = await rpc(mgmt, 'ListModels', {}, metadata({ authorization: `Bearer ${keys.managementKey}` }));
  t.is(JSON.parse(list.msg).models.length, 4);
});

test('shutdown: health NOT_SERVING first, the in-flight stream request is answered, streams end UNAVAILABLE', async (t) => {
  const srv = await startGrpcServer();
  const c = clients(srv.server.addresses.grpcInference!);
  t.teardown(async () => {
    c.close();
    await srv.close();
  });
  const batcher = srv.server.registry.resolve('busy').batcher;

  const watch: ClientReadableStream<any> = (c.health as any).Watch({ service: '' });
  const seen: string[] = [];
  watch.on('data', (r: { status: string }) => seen.push(r.status));
  const watchEnd = new Promise<{ code: number; details: string }>((resolve) => watch.on('status', resolve));
  watch.on('error', () => {});
  while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
  t.deepEqual(seen, ['SERVING']);

  const stream: ClientDuplexStream<any, any> = (c.ts as any).StreamPredictions2();
  const answers: any[] = [];
  stream.on('data', (r) => answers.push(r));
  stream.on('error', () => {});
  const streamEnd = new Promise<{ code: number; details: string }>((resolve) => stream.on('status', resolve));
  stream.write({ model_name: 'busy', input: { data: Buffer.from('[[400]]') }, sequence_id: 'in-flight' });
  while (batcher.running === 0) await new Promise((r) => setTimeout(r, 5));

  const closing = srv.server.close(20_000);
  const ended = await watchEnd;
  t.deepEqual(seen, ['SERVING', 'NOT_SERVING']);
  t.is(ended.code, Code.UNAVAILABLE);
  t.deepEqual(JSON.parse(ended.details), { code: 503, type: 'ServiceUnavailableException', message: 'torchd is shutting down: retry on another instance' });

  const end = await streamEnd;
  t.is(answers.length, 1);
  t.is(answers[0].sequence_id, 'in-flight');
  t.deepEqual(JSON.parse(answers[0].prediction.toString()), [[800]]);
  t.is(end.code, Code.UNAVAILABLE);
  t.deepEqual(JSON.parse(end.details), { code: 503, type: 'ServiceUnavailableException', message: 'torchd is shutting down: retry on another instance' });
  await closing;
  t.is((await failure(rpc(c.v2, 'ServerLive', {}, undefined, 2000))).code, Code.UNAVAILABLE, 'the listener is closed');
});

test('enable_grpc=false starts no gRPC listener; grpc_max_request_size bounds messages on its own', async (t) => {
  const off = await startGrpcServer({ enable_grpc: 'false' });
  t.teardown(() => off.close());
  t.is(off.server.addresses.grpcInference, undefined);
  t.is(off.server.addresses.grpcManagement, undefined);

  const small = await startGrpcServer({ grpc_max_request_size: '1000' });
  const c = clients(small.server.addresses.grpcInference!);
  t.teardown(async () => {
    c.close();
    await small.close();
  });
  const f = await failure(rpc(c.ts, 'Predictions', { model_name: 'adder', input: { x: Buffer.alloc(2000, 0x20) } }));
  t.is(f.code, Code.RESOURCE_EXHAUSTED);
  t.regex(String(f.details), /Received message larger than max \(\d+ vs 1000\)/);
  const ok = await rpc(c.ts, 'Predictions', { model_name: 'adder', input: { x: Buffer.from('[[1]]'), y: Buffer.from('[[2]]') } });
  t.deepEqual(JSON.parse(ok.prediction.toString()), [[[5]], [2]]);
  // REST keeps max_request_size: 2000 bytes are fine there.
  t.is((await call(`${small.url}/predictions/adder`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"x": [[1]], "y": [[2]]}${' '.repeat(2000)}` })).status, 200);
});
