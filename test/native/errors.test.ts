// Bad calls: each rejects with its exact `.code` and error kind, the process stays up, and the next
// good call on the same model still succeeds.
import test from 'ava';

import { loadModel, NativeError, nativeErrorCode, type Model, type Tensor } from '../../src/native.js';
import { asTensor, f32, fixture, maxRelError, reference } from './helpers.js';

type Kind = typeof Error | typeof TypeError | typeof RangeError;

async function expectCode(t: import('ava').ExecutionContext, call: Promise<unknown>, code: string, kind: Kind, message?: RegExp) {
  const error = await t.throwsAsync(call);
  t.is((error as { code?: string }).code, code, error?.message);
  t.true(error instanceof NativeError, 'instanceof NativeError');
  t.is(nativeErrorCode(error), code as never);
  if (kind !== Error) t.true(error instanceof kind, `${error?.name} is not a ${kind.name}`);
  else t.false(error instanceof TypeError || error instanceof RangeError, `${error?.name} should be a plain Error`);
  if (message) t.regex(error!.message, message);
  // A JS stack that leads back into this test file, not an empty native one.
  t.regex(error!.stack ?? '', /errors\.test\.ts/);
  return error;
}

const linearInput = (): Tensor => f32(reference.linear.input);

async function stillWorks(t: import('ava').ExecutionContext, m: Model) {
  const out = asTensor(await m.forward([linearInput()]));
  t.true(maxRelError(out.data as Float32Array, reference.linear.output.data) < 1e-5);
}

test('load: missing file, random bytes, a zip that is not a model -> E_LOAD', async (t) => {
  await expectCode(t, loadModel(fixture('does-not-exist.pt')), 'E_LOAD', Error, /cannot open model file/);
  await expectCode(t, loadModel(fixture('random.bin')), 'E_LOAD', Error, /zip archive/);
  await expectCode(t, loadModel(fixture('not_a_model.zip')), 'E_LOAD', Error, /cannot load TorchScript model/);
  const m = await loadModel(fixture('linear.pt'));
  await stillWorks(t, m);
  await m.dispose();
});

test('load: bad options -> E_ARGUMENT / E_DEVICE', async (t) => {
  await expectCode(t, loadModel(42 as unknown as string), 'E_ARGUMENT', TypeError);
  await expectCode(t, loadModel(fixture('linear.pt'), { workers: 0 }), 'E_ARGUMENT', RangeError);
  await expectCode(t, loadModel(fixture('linear.pt'), { threads: 1.5 }), 'E_ARGUMENT', RangeError);
  await expectCode(t, loadModel(fixture('linear.pt'), { precision: 'fp8' as 'fp16' }), 'E_ARGUMENT', RangeError);
  await expectCode(t, loadModel(fixture('linear.pt'), { device: 'tpu' }), 'E_DEVICE', RangeError, /unknown device/);
  await expectCode(t, loadModel(fixture('linear.pt'), { device: 'cuda:99' }), 'E_DEVICE', Error);
});

test('forward: the table of bad inputs', async (t) => {
  const m = await loadModel(fixture('linear.pt'));
  const data = new Float32Array(40);
  const cases: [string, unknown, string, Kind, RegExp][] = [
    ['not an array', { data, shape: [4, 10], dtype: 'float32' }, 'E_ARGUMENT', TypeError, /inputs must be an array/],
    ['tensor not an object', [7], 'E_ARGUMENT', TypeError, /must be an object/],
    ['data not a typed array', [{ data: [1, 2], shape: [2], dtype: 'float32' }], 'E_ARGUMENT', TypeError, /typed array/],
    ['unknown dtype name', [{ data, shape: [4, 10], dtype: 'float8' }], 'E_DTYPE', TypeError, /not a torchd dtype/],
    ['typed array kind differs from dtype', [{ data, shape: [4, 10], dtype: 'float64' }], 'E_DTYPE', TypeError, /travels as Float64Array/],
    // Thrown inside forward: the model failing on this input (E_FORWARD → 503 "Prediction failed"), never
    // classified by LibTorch's wording (which differs between the saved and the optimised module).
    ['wrong dtype for the model', [{ data: new Float64Array(40), shape: [4, 10], dtype: 'float64' }], 'E_FORWARD', Error, /dtype|scalar type/],
    ['wrong element count for the shape', [{ data, shape: [4, 11], dtype: 'float32' }], 'E_SHAPE', RangeError, /40 elements do not match shape \[4,11\]/],
    ['negative dim', [{ data, shape: [-4, -10], dtype: 'float32' }], 'E_SHAPE', RangeError, /non-negative integer/],
    ['wrong rank', [{ data, shape: [40], dtype: 'float32' }], 'E_FORWARD', Error, /shapes cannot be multiplied/],
    ['wrong feature size', [{ data, shape: [5, 8], dtype: 'float32' }], 'E_FORWARD', Error, /shapes cannot be multiplied/],
    ['too many inputs', [linearInput(), linearInput()], 'E_ARGUMENT', RangeError, /forward takes 1 input\(s\) \(x\), got 2/],
    ['no inputs', [], 'E_ARGUMENT', RangeError, /got 0/],
  ];
  for (const [name, inputs, code, kind, message] of cases) {
    t.log(name);
    await expectCode(t, m.forward(inputs as Tensor[]), code, kind, message);
    await stillWorks(t, m);
  }
  await m.dispose();
});

test('forward: the model raising is E_FORWARD with its message', async (t) => {
  const m = await loadModel(fixture('raises.pt'));
  await expectCode(
    t,
    m.forward([{ data: new Float32Array(6), shape: [2, 3], dtype: 'float32' }]),
    'E_FORWARD',
    Error,
    /model raised: builtins\.ValueError: expected 4 features/,
  );
  const out = asTensor(await m.forward([{ data: Float32Array.from([1, 2, 3, 4]), shape: [1, 4], dtype: 'float32' }]));
  t.deepEqual(Array.from(out.data as Float32Array), [3, 6, 9, 12]);
  await m.dispose();
});

test('forward: a wrong rank for a CNN fails inside forward: E_FORWARD with LibTorch\'s message, no backtrace', async (t) => {
  const m = await loadModel(fixture('cnn.pt'));
  const err = await expectCode(t, m.forward([{ data: new Float32Array(784), shape: [1, 784], dtype: 'float32' }]), 'E_FORWARD', Error, /conv2d/);
  t.notRegex(err?.message ?? '', /Exception raised from|frame #\d/);
  await m.dispose();
});

test('integratedGradients: bad targets, steps and options', async (t) => {
  const m = await loadModel(fixture('linear.pt'));
  const x = linearInput();
  const cases: [string, () => Promise<unknown>, string, Kind, RegExp][] = [
    ['target out of range', () => m.integratedGradients([x], { target: [0, 1, 3, 0] }), 'E_ARGUMENT', RangeError, /target\[2\] = 3 is out of range for 3 outputs/],
    ['negative target', () => m.integratedGradients([x], { target: [0, -1, 0, 0] }), 'E_ARGUMENT', RangeError, />= 0/],
    ['target count differs from batch', () => m.integratedGradients([x], { target: [0] }), 'E_ARGUMENT', RangeError, /1 entries for a batch of 4/],
    ['steps 0', () => m.integratedGradients([x], { target: [0, 0, 0, 0], steps: 0 }), 'E_ARGUMENT', RangeError, /steps/],
    ['steps not a number', () => m.integratedGradients([x], { target: [0, 0, 0, 0], steps: '3' as unknown as number }), 'E_ARGUMENT', TypeError, /steps/],
    ['trapezoid with 1 step', () => m.integratedGradients([x], { target: [0, 0, 0, 0], steps: 1, method: 'riemann_trapezoid' }), 'E_ARGUMENT', RangeError, /steps >= 2/],
    ['unknown method', () => m.integratedGradients([x], { target: [0, 0, 0, 0], method: 'simpson' as 'gausslegendre' }), 'E_ARGUMENT', RangeError, /method/],
    ['chunk 0', () => m.integratedGradients([x], { target: [0, 0, 0, 0], chunk: 0 }), 'E_ARGUMENT', RangeError, /chunk/],
    ['no options', () => m.integratedGradients([x], undefined as never), 'E_ARGUMENT', TypeError, /options/],
    ['baseline shape', () => m.integratedGradients([x], { target: [0, 0, 0, 0], baseline: { data: new Float32Array(3), shape: [3], dtype: 'float32' } }), 'E_SHAPE', RangeError, /baseline shape/],
    ['integer input', () => m.integratedGradients([{ data: new Int32Array(40), shape: [4, 10], dtype: 'int32' }], { target: [0, 0, 0, 0] }), 'E_DTYPE', TypeError, /floating-point/],
  ];
  for (const [name, call, code, kind, message] of cases) {
    t.log(name);
    await expectCode(t, call(), code, kind, message);
  }
  const ok = await m.integratedGradients([x], { target: [0, 0, 0, 0] });
  t.is(ok.delta.length, 4);
  await m.dispose();
});

test('use after dispose -> E_DISPOSED, for every method', async (t) => {
  const m = await loadModel(fixture('linear.pt'));
  await m.dispose();
  await expectCode(t, m.forward([linearInput()]), 'E_DISPOSED', Error, /was disposed/);
  await expectCode(t, m.integratedGradients([linearInput()], { target: [0, 0, 0, 0] }), 'E_DISPOSED', Error);
  const error = t.throws(() => m.setWorkers(2));
  t.is((error as { code?: string }).code, 'E_DISPOSED');
  await t.notThrowsAsync(m.dispose()); // idempotent
  t.deepEqual(m.inputs, [{ name: 'x' }]); // metadata stays readable
});

test('setWorkers rejects non-integers with RangeError/TypeError', (t) => {
  return loadModel(fixture('linear.pt')).then(async (m) => {
    const range = t.throws(() => m.setWorkers(0));
    t.true(range instanceof RangeError);
    t.is((range as { code?: string }).code, 'E_ARGUMENT');
    const type = t.throws(() => m.setWorkers('2' as unknown as number));
    t.true(type instanceof TypeError);
    await m.dispose();
  });
});

test('captureStack: false rejects with the same code and message and no caller frames', async (t) => {
  // The batcher's option: it maps errors by code and drops the stack, so the per-call capture is skipped.
  const m = await loadModel(fixture('linear.pt'));
  const bad: Tensor = { data: new Float32Array(3), shape: [1, 4], dtype: 'float32' };
  const plain = await t.throwsAsync(m.forward([bad]));
  const bare = await t.throwsAsync(m.forward([bad], { captureStack: false }));
  t.is((bare as { code?: string }).code, (plain as { code?: string }).code);
  t.is(bare!.message, plain!.message);
  t.true(bare instanceof NativeError);
  t.regex(plain!.stack ?? '', /errors\.test\.ts/);
  t.notRegex(bare!.stack ?? '', /errors\.test\.ts/);
  await stillWorks(t, m);
});
