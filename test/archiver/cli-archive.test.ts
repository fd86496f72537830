// `torchd archive` as a user runs it (a child process over src/cli.ts): the .mar it writes loads through
// the model store and serves; a non-TorchScript file makes it exit non-zero with the reason.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createModelStore } from '../../src/store/index.js';
import { HERE, makeEnv } from '../fixtures/v2/servers.js';

const run = promisify(execFile);
const ROOT = join(HERE, '..', '..', '..');

function torchd(args: string[]) {
  return run(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), ...args], { cwd: ROOT, timeout: 60_000 });
}

// `archive --version 3.0` must reach the subcommand, not the program's own --version flag.
test('torchd archive writes a .mar that round-trips through the model store', async (t) => {
  const env = await makeEnv();
  t.teardown(env.cleanup);
  const { stdout } = await torchd([
    'archive', '--model-name', 'adder', '--version', '3.0', '--serialized-file', join(HERE, 'two_inputs.pt'),
    '--handler', 'tensor', '--extra-files', join(HERE, 'reference.json'), '--export-path', env.store,
  ]);
  t.is(stdout.trim(), join(env.store, 'adder.mar'));
  const spec = await createModelStore(env.store).load('adder.mar');
  t.like(spec, { name: 'adder', version: '3.0', url: 'adder.mar' });
  t.true(existsSync(join(spec.dir, 'reference.json')));
  const mv = await env.registry.register(spec, {});
  const out = (await mv.batcher.infer([
    { data: Float32Array.of(1), shape: [1, 1], dtype: 'float32' },
    { data: Float32Array.of(2), shape: [1, 1], dtype: 'float32' },
  ])) as Array<{ data: Float32Array }>;
  t.deepEqual(Array.from(out[0].data), [5]);
});

test('torchd archive refuses a non-TorchScript file with a non-zero exit and the reason', async (t) => {
  const env = await makeEnv();
  t.teardown(env.cleanup);
  const err = await t.throwsAsync(torchd([
    'archive', '--model-name', 'sd', '--serialized-file', join(HERE, 'state_dict_not_torchscript.pt'), '--handler', 'tensor', '--export-path', env.store,
  ])) as Error & { code?: number; stderr?: string };
  t.not(err.code, 0);
  t.regex(err.stderr ?? '', /state_dict_not_torchscript\.pt is not TorchScript/);
  t.false(existsSync(join(env.store, 'sd.mar')));
});
