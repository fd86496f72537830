// The registry's side of the optimised forward module: `optimize` from the settings reaches the engine, the
// warm-up at load (declared inputs, or an image classifier's fixed input size) decides which module serves,
// and a fallback to the original is logged as a warning.
import test from 'ava';
import type { LoadedModelVersion } from '../../src/engine/registry.js';
import path from 'node:path';
import pino from 'pino';
import { Writable } from 'node:stream';

import { f32, makeRegistry, specFor } from './helpers.js';

const models = path.join(path.dirname(specFor('rows.pt').serializedFile), '..', 'models');
const nativeFixtures = path.join(path.dirname(specFor('rows.pt').serializedFile), '..', 'native');

/** A logger whose records the test can read. */
function capturingLogger() {
  const records: { level: number; msg: string; reason?: string; forwardModule?: string }[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line) records.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), records };
}

test('declared inputs: the warm-up at load settles the optimised module before the first request', async (t) => {
  const registry = makeRegistry();
  const spec = { ...specFor('rows.pt'), inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4], dtype: 'float32' as const }] };
  const mv = await registry.register(spec, {});
  t.deepEqual(mv.optimization, { serving: 'optimized', reason: '' });
  await registry.close();
});

test('an image classifier with a fixed crop size is warmed (and checked) with one preprocessed-size image', async (t) => {
  const registry = makeRegistry();
  const spec = specFor(path.join(models, 'mnist.pt'), 'digits');
  spec.handler = { name: 'image_classifier', image_size: null, crop_size: 28, channels: 1, mean: [0.1307], std: [0.3081], topk: 5, output: 'argmax' };
  const mv = await registry.register(spec, {});
  t.is(mv.optimization.serving, 'optimized');
  t.is((mv as LoadedModelVersion).forwardCalls, 1);
  await registry.close();
});

test('without a warm-up input the first request settles it; optimize: false (config or override) serves the file as saved', async (t) => {
  const registry = makeRegistry();
  const mv = await registry.register(specFor('rows.pt'), {});
  t.is(mv.optimization.serving, 'pending');
  await mv.batcher.infer([f32([[1, 2, 3, 4]])]);
  t.is(mv.optimization.serving, 'optimized');
  const fromConfig = await registry.register({ ...specFor('rows.pt', 'rows', '2.0'), settings: { optimize: false } }, {});
  t.deepEqual(fromConfig.optimization, { serving: 'original', reason: 'optimize is off' });
  const fromOverride = await registry.register(specFor('rows.pt', 'rows', '3.0'), { optimize: false });
  t.is(fromOverride.optimization.serving, 'original');
  await registry.close();
});

test('outputs that differ: the original serves and the registry logs a warning with the reason', async (t) => {
  const { logger, records } = capturingLogger();
  const registry = makeRegistry({ logger });
  const spec = { ...specFor(path.join(nativeFixtures, 'noisy.pt')), inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], dtype: 'float32' as const }] };
  const mv = await registry.register(spec, {});
  t.is(mv.optimization.serving, 'original');
  const warning = records.find((r) => r.level === 40 && /serving the original module/.test(r.msg));
  t.truthy(warning);
  t.regex(warning!.reason!, /outputs differ from the original's/);
  t.is(records.find((r) => r.msg === 'model loaded')?.forwardModule, 'original');
  // Without a warm-up input the warning comes after the first request.
  const late = await registry.register({ ...specFor(path.join(nativeFixtures, 'noisy.pt'), 'noisy2') }, {});
  t.is(late.optimization.serving, 'pending');
  await late.batcher.infer([f32([[1, 2, 3]])]);
  await new Promise((r) => setImmediate(r));
  t.is(records.filter((r) => r.level === 40 && /serving the original module/.test(r.msg)).length, 2);
  await registry.close();
});
