// `torchd archive` in a child process: writes a .mar the model store loads; refuses a non-TorchScript file.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createModelStore } from '../../src/store/index.js';

const BIN = fileURLToPath(new URL('../../bin/torchd.js', import.meta.url));
const F = fileURLToPath(new URL('../fixtures/models/', import.meta.url));
const run = (args: string[]) =>
  promisify(execFile)(process.execPath, [BIN, 'archive', ...args], { timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

test('archive writes NAME.mar that the store reads back with its config', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'torchd-archive-'));
  try {
    const r = await run(['--model-name', 'digits', '--version', '3.0', '--serialized-file', join(F, 'mnist.pt'),
      '--handler', 'image_classifier', '--config', join(F, 'mnist-config.yaml'), '--export-path', out]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout.trim(), join(out, 'digits.mar'));
    const spec = await createModelStore(out).load('digits.mar');
    t.like(spec, { name: 'digits', version: '3.0' });
    t.like(spec.handler, { name: 'image_classifier', channels: 1, output: 'argmax' });
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test('archive refuses a torch.save() pickle with how to export TorchScript (exit 1)', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'torchd-archive-'));
  try {
    const r = await run(['--model-name', 'bad', '--serialized-file', join(F, 'state_dict.pt'), '--handler', 'tensor', '--export-path', out]);
    t.is(r.code, 1);
    t.regex(r.stderr, /^torchd: .*not TorchScript.*torch\.jit\.script/);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
