// The management gRPC port over real loopback: every ManagementAPIsService rpc with the REST API's JSON
// bodies as `msg`, the register → scale → set-default → unregister flow on a second version, health of a
// model before and after unregister, and the errors with their codes and JSON details.
import test from 'ava';
import { status as Code, type Client } from '@grpc/grpc-js';
import { copyFile, mkdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeMar } from '../../src/store/index.js';
import { call, fixture, type TestServer } from '../http/_server.js';
import { clients, type Clients, failure, managementClient, rpc, startGrpcServer } from './_grpc.js';

const refs = JSON.parse(readFileSync(fixture('references.json'), 'utf8')) as {
  mnist: { predictions_v1: Record<string, number>; predictions_v2: Record<string, number> };
};
const digit = (d: number) => readFileSync(fixture(`images/${d}.png`));

let srv: TestServer;
let mgmt: Client;
let inf: Clients;
let mgmtHealth: Clients;
test.before(async () => {
  srv = await startGrpcServer();
  // mnist 2.0 (mnist_v2.pt) beside the loaded 1.0, to register over gRPC.
  const scratch = join(srv.store, '.scratch');
  await mkdir(scratch, { recursive: true });
  const mar = await writeMar({ modelName: 'mnist', version: '2.0', serializedFile: fixture('mnist_v2.pt'), handler: 'image_classifier', configFile: fixture('mnist-config.yaml'), exportPath: scratch });
  await copyFile(mar, join(srv.store, 'mnist-v2.mar'));
  mgmt = managementClient(srv.server.addresses.grpcManagement!);
  inf = clients(srv.server.addresses.grpcInference!);
  mgmtHealth = clients(srv.server.addresses.grpcManagement!);
});
test.after.always(async () => {
  mgmt?.close();
  inf?.close();
  mgmtHealth?.close();
  await srv?.close();
});

const msg = async (method: string, request: object) => JSON.parse((await rpc(mgmt, method, request)).msg);
const rest = async (path: string) => (await call(`${srv.server.addresses.management}${path}`)).text;

test.serial('ListModels and DescribeModel answer the REST bodies', async (t) => {
  t.is((await rpc(mgmt, 'ListModels', {})).msg, await rest('/models'));
  t.is((await rpc(mgmt, 'ListModels', { limit: 2, next_page_token: 1 })).msg, await rest('/models?limit=2&next_page_token=1'));
  t.deepEqual(await msg('ListModels', { limit: 2 }), { models: [{ modelName: 'adder', modelUrl: 'adder.mar' }, { modelName: 'busy', modelUrl: 'busy.mar' }], nextPageToken: '2' });
  const described = await msg('DescribeModel', { model_name: 'echo' });
  t.deepEqual(described, JSON.parse(await rest('/models/echo')));
  t.is(described[0].modelName, 'echo');
  t.deepEqual(await msg('DescribeModel', { model_name: 'echo', model_version: 'all' }), JSON.parse(await rest('/models/echo/all')));
});

test.serial('register → predict → scale → set-default → unregister on a second version; model health follows', async (t) => {
  const predict = async (version?: string) =>
    Number((await rpc(inf.ts, 'Predictions', { model_name: 'mnist', model_version: version ?? '', input: { data: digit(4) } })).prediction.toString());

  t.deepEqual(await msg('RegisterModel', { url: 'mnist-v2.mar', initial_workers: 1, synchronous: true }), {
    status: 'Model "mnist" Version: 2.0 registered with 1 initial workers',
  });
  t.is(await predict('2.0'), refs.mnist.predictions_v2['4.png']);
  t.is(await predict(), refs.mnist.predictions_v1['4.png'], '1.0 is still the default');

  t.deepEqual(await msg('ScaleWorker', { model_name: 'mnist', model_version: '2.0', min_worker: 2, max_worker: 2, synchronous: true }), {
    status: 'Workers scaled to 2 for model: mnist, version: 2.0',
  });
  t.is((await msg('DescribeModel', { model_name: 'mnist', model_version: '2.0' }))[0].workers.length, 2);
  t.deepEqual(await msg('ScaleWorker', { model_name: 'mnist', model_version: '2.0', min_worker: 1 }), { status: 'Processing worker updates...' });

  t.deepEqual(await msg('SetDefault', { model_name: 'mnist', model_version: '2.0' }), {
    status: 'Default version successfully updated for model "mnist" to "2.0"',
  });
  t.is(await predict(), refs.mnist.predictions_v2['4.png'], '2.0 is the default now');

  t.deepEqual(await msg('UnregisterModel', { model_name: 'mnist', model_version: '1.0' }), { status: 'Model "mnist" Version: 1.0 unregistered' });
  t.is((await failure(predict('1.0'))).code, Code.NOT_FOUND);

  // Health by model name, on both ports, before and after the last version goes.
  for (const c of [inf, mgmtHealth]) t.deepEqual(await rpc(c.health, 'Check', { service: 'mnist' }), { status: 'SERVING' });
  t.deepEqual(await rpc(inf.health, 'Check', { service: '' }), { status: 'SERVING' });
  t.deepEqual(await msg('UnregisterModel', { model_name: 'mnist' }), { status: 'Model "mnist" Version: 2.0 unregistered' });
  for (const c of [inf, mgmtHealth]) {
    const f = await failure(rpc(c.health, 'Check', { service: 'mnist' }));
    t.is(f.code, Code.NOT_FOUND);
    t.is(f.details, 'Health status unknown for service mnist');
  }
  t.deepEqual(await rpc(inf.health, 'Check', { service: '' }), { status: 'SERVING' }, 'the server stays healthy');
  t.deepEqual(await rpc(mgmtHealth.health, 'Check', { service: 'org.pytorch.serve.grpc.management.ManagementAPIsService' }), { status: 'SERVING' });
});

test('errors: codes from the REST status, the REST JSON as details', async (t) => {
  const cases: [string, object, number, object][] = [
    ['DescribeModel', { model_name: 'nope' }, Code.NOT_FOUND, { code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' }],
    [
      'DescribeModel',
      { model_name: 'echo', model_version: '7' },
      Code.NOT_FOUND,
      { code: 404, type: 'ModelVersionNotFoundException', message: 'Model version: 7 does not exist for model: echo' },
    ],
    ['RegisterModel', {}, Code.INVALID_ARGUMENT, { code: 400, type: 'BadRequestException', message: 'Parameter url is required.' }],
    ['RegisterModel', { url: 'echo.mar', synchronous: true }, Code.ABORTED, { code: 409, type: 'ConflictStatusException', message: 'Model version 1.0 for model echo is already registered.' }],
    [
      'RegisterModel',
      { url: '../outside.mar' },
      Code.INVALID_ARGUMENT,
      { code: 400, type: 'BadRequestException', message: 'Relative path is not allowed in url: ../outside.mar' },
    ],
    [
      'ScaleWorker',
      { model_name: 'echo', min_worker: 3, max_worker: 2 },
      Code.INVALID_ARGUMENT,
      { code: 400, type: 'BadRequestException', message: 'max_worker (2) must be >= min_worker (3)' },
    ],
    [
      'SetDefault',
      { model_name: 'echo', model_version: '' },
      Code.INVALID_ARGUMENT,
      { code: 400, type: 'BadRequestException', message: 'Invalid model version "": use letters, digits, \'_\', \'-\' and \'.\', starting with a letter or digit, without \'/\' or \'..\'' },
    ],
    ['UnregisterModel', { model_name: 'nope' }, Code.NOT_FOUND, { code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' }],
  ];
  for (const [method, request, code, details] of cases) {
    const f = await failure(rpc(mgmt, method, request));
    t.is(f.code, code, `${method} ${JSON.stringify(request)}`);
    t.deepEqual(f.details, details);
  }
});

test('reflection on the management port lists its services', async (t) => {
  const stream = (mgmtHealth.reflection as any).ServerReflectionInfo();
  const answer = new Promise<any>((resolve) => stream.once('data', resolve));
  stream.write({ list_services: '' });
  const res = await answer;
  stream.end();
  t.deepEqual(res.list_services_response.service.map((s: { name: string }) => s.name).sort(), [
    'grpc.health.v1.Health',
    'org.pytorch.serve.grpc.management.ManagementAPIsService',
  ]);
});
