// A client that is not ours: Debian's python3-grpcio with stubs protoc generates from proto/ in the
// test's temp folder (python3-grpcio, python3-protobuf, protobuf-compiler, protobuf-compiler-grpc come
// from scripts/setup). It runs TorchServe's documented client flow and a KServe v2 raw ModelInfer.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PROTO_DIR } from '../../src/grpc/proto.js';
import { writeMar } from '../../src/store/index.js';
import { fixture } from '../http/_server.js';
import { startGrpcServer } from './_grpc.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const CLIENT = fileURLToPath(new URL('./python_client.py', import.meta.url));
const PLUGIN = '/usr/bin/grpc_python_plugin';

test('TorchServe\'s Python client flow, StreamPredictions2 and a v2 raw ModelInfer through python3-grpcio', async (t) => {
  for (const needed of [PYTHON, '/usr/bin/protoc', PLUGIN]) {
    t.true(existsSync(needed), `${needed} is missing: run ./scripts/setup (it installs python3-grpcio, protobuf-compiler, protobuf-compiler-grpc)`);
  }
  const stubs = await mkdtemp(join(tmpdir(), 'torchd-pystubs-'));
  t.teardown(() => rm(stubs, { recursive: true, force: true }));
  // Well-known types (google/protobuf/empty.proto, any.proto) come from protoc's own include folder.
  await run('/usr/bin/protoc', [
    `-I${PROTO_DIR}`, '-I/usr/include', `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, `--plugin=protoc-gen-grpc_python=${PLUGIN}`,
    'inference.proto', 'management.proto', 'kserve/grpc_predict_v2.proto', 'google/rpc/status.proto',
  ]);

  const srv = await startGrpcServer();
  t.teardown(() => srv.close());
  // A second archive of the digit model to register under another name.
  const scratch = join(srv.store, '.scratch');
  await copyFile(await writeMar({ modelName: 'mnist', version: '1.0', serializedFile: fixture('mnist.pt'), handler: 'image_classifier', configFile: fixture('mnist-config.yaml'), exportPath: scratch }), join(srv.store, 'digits.mar'));

  const { stdout } = await run(
    PYTHON,
    [CLIENT, srv.server.addresses.grpcInference!, srv.server.addresses.grpcManagement!, fixture('images/3.png'), 'digits.mar'],
    { env: { ...process.env, PYTHONPATH: stubs }, timeout: 90_000 },
  );
  const out = JSON.parse(stdout);
  const expected = JSON.parse(readFileSync(fixture('references.json'), 'utf8')).mnist.predictions_v1['3.png'];
  t.is(out.ping, '{"status":"Healthy"}');
  t.is(out.prediction, String(expected));
  t.deepEqual(out.stream, [
    { sequence_id: 's1', prediction: String(expected), code: null },
    { sequence_id: 's2', prediction: '', code: 3 },
    { sequence_id: 's3', prediction: String(expected), code: null },
  ], 'StreamPredictions2: in order, the bad image answered with INVALID_ARGUMENT (3) in status');
  t.deepEqual(out.unknown_model, { code: 'NOT_FOUND', details: { code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' } });
  t.deepEqual(out.v2, {
    id: 'py-1',
    model_name: 'adder',
    outputs: [
      { name: 'output0', datatype: 'FP32', shape: [1, 3] },
      { name: 'output1', datatype: 'FP32', shape: [1] },
    ],
    output0: [21, 42, 63],
    output1: [140],
  });
  const names = (l: { models: { modelName: string }[] }) => l.models.map((m) => m.modelName).sort();
  t.deepEqual(names(out.list_before), ['adder', 'busy', 'echo', 'mnist']);
  t.deepEqual(out.register, { status: 'Model "digits" Version: 1.0 registered with 1 initial workers' });
  t.deepEqual(names(out.list_after), ['adder', 'busy', 'digits', 'echo', 'mnist']);
  t.deepEqual(out.unregister, { status: 'Model "digits" Version: 1.0 unregistered' });
  t.false(srv.server.registry.names().includes('digits'));
});
