// Model store: .mar round trip, exploded directories, archive safety, TorchScript check, handler and config rules.
import test from 'ava';
import { mkdtemp, mkdir, writeFile, copyFile, readdir, symlink, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yazl from 'yazl';
import { BadRequestError, ConflictError } from '../../src/errors.js';
import { createModelStore, writeMar } from '../../src/store/index.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/models');
const fx = (name: string): string => path.join(FIXTURES, name);

async function tempStore(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'torchd-store-test-'));
}

/** A zip with the given entries; names are written with placeholders, then patched byte-for-byte, so the
 * archive can hold names (`../x`, `/x`) that yazl itself refuses to write. */
async function zipWithRawNames(entries: { name: string; data: Buffer }[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const patches: [string, string][] = [];
  entries.forEach((e, i) => {
    const placeholder = `p${i}`.padEnd(e.name.length, 'x');
    zip.addBuffer(e.data, placeholder, { compress: false });
    patches.push([placeholder, e.name]);
  });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(chunk as Buffer);
  let buf = Buffer.concat(chunks);
  for (const [from, to] of patches) {
    const a = Buffer.from(from);
    let at = buf.indexOf(a);
    while (at >= 0) {
      Buffer.from(to).copy(buf, at);
      at = buf.indexOf(a, at + 1);
    }
  }
  return buf;
}

function manifest(model: Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify({ runtime: 'python', model, archiverVersion: 'test' }));
}

async function explodedDir(root: string, dirName: string, model: Record<string, unknown>, extra: Record<string, string | Buffer> = {}): Promise<string> {
  const dir = path.join(root, dirName);
  await mkdir(path.join(dir, 'MAR-INF'), { recursive: true });
  await writeFile(path.join(dir, 'MAR-INF', 'MANIFEST.json'), manifest(model));
  for (const [name, content] of Object.entries(extra)) await writeFile(path.join(dir, name), content);
  return dir;
}

test('writeMar → load round trip: manifest, model config, labels, settings', async (t) => {
  const root = await tempStore();
  const labels = path.join(root, 'src-index_to_name.json');
  await writeFile(labels, JSON.stringify({ 0: ['n0', 'zero'], 1: 'one' }));
  const labelsCopy = path.join(await mkdtemp(path.join(os.tmpdir(), 'torchd-l-')), 'index_to_name.json');
  await copyFile(labels, labelsCopy);
  const mar = await writeMar({
    modelName: 'mnist', version: '2.0', serializedFile: fx('mnist.pt'), handler: 'image_classifier',
    configFile: fx('mnist-config.yaml'), extraFiles: [labelsCopy], exportPath: root,
  });
  t.is(mar, path.join(root, 'mnist.mar'));
  const store = createModelStore(root);
  const spec = await store.load('mnist.mar');
  t.is(spec.name, 'mnist');
  t.is(spec.version, '2.0');
  t.is(spec.url, 'mnist.mar');
  t.is(path.basename(spec.serializedFile), 'mnist.pt');
  t.is((await stat(spec.serializedFile)).size, (await stat(fx('mnist.pt'))).size);
  t.deepEqual(spec.handler, {
    name: 'image_classifier', image_size: null, crop_size: null, channels: 1,
    mean: [0.1307], std: [0.3081], topk: 5, output: 'argmax',
  });
  t.deepEqual(spec.settings, { batchSize: 8, maxBatchDelay: 5 });
  t.deepEqual(spec.labels, { 0: 'zero', 1: 'one' });
  // modelName overrides the MANIFEST's; a second load reuses the extraction.
  const again = await store.load(path.join(root, 'mnist.mar'), { modelName: 'digits' });
  t.is(again.name, 'digits');
  t.is(again.dir, spec.dir);
  t.deepEqual(await store.list(), ['mnist.mar']);
});

test('writeMar refuses to overwrite without force', async (t) => {
  const root = await tempStore();
  const opts = { modelName: 'add', version: '1.0', serializedFile: fx('add2.pt'), handler: 'tensor', exportPath: root };
  await writeMar(opts);
  const err = await t.throwsAsync(writeMar(opts), { instanceOf: ConflictError });
  t.regex(err!.message, /already exists/);
  t.is(await writeMar({ ...opts, force: true }), path.join(root, 'add.mar'));
  await t.throwsAsync(writeMar({ ...opts, force: true, extraFiles: ['/nonexistent/x.json'] }), {
    instanceOf: BadRequestError, message: 'File to archive not found: /nonexistent/x.json',
  });
});

test('exploded directory with the same layout; defaults: imagenet preset, version 1.0', async (t) => {
  const root = await tempStore();
  const dir = await explodedDir(root, 'resnet', { modelName: 'resnet-18', serializedFile: 'model.pt', handler: 'image_classifier' });
  await copyFile(fx('add2.pt'), path.join(dir, 'model.pt'));
  await copyFile(fx('index_to_name.json'), path.join(dir, 'index_to_name.json'));
  const store = createModelStore(root);
  const spec = await store.load('resnet');
  t.is(spec.name, 'resnet-18');
  t.is(spec.version, '1.0');
  t.is(spec.dir, await (await import('node:fs/promises')).realpath(dir));
  t.deepEqual(spec.handler, {
    name: 'image_classifier', image_size: 256, crop_size: 224, channels: 3,
    mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], topk: 5, output: 'topk',
  });
  t.deepEqual(spec.settings, {});
  t.is(spec.labels?.['0'], 'tench');
  t.is(spec.labels?.['281'], 'tabby');
  t.deepEqual(await store.list(), ['resnet']);
});

test("TorchServe's `mnist` handler name means image_classifier with the MNIST preset", async (t) => {
  const root = await tempStore();
  const dir = await explodedDir(root, 'm', { modelName: 'mnist', modelVersion: 1, serializedFile: 'mnist.pt', handler: 'mnist' });
  await copyFile(fx('mnist.pt'), path.join(dir, 'mnist.pt'));
  const spec = await createModelStore(root).load('m');
  t.is(spec.version, '1');
  t.deepEqual(spec.handler, {
    name: 'image_classifier', preset: 'mnist', image_size: null, crop_size: null, channels: 1,
    mean: [0.1307], std: [0.3081], topk: 5, output: 'argmax',
  });
});

test('archive entries with ../ or absolute names are refused and nothing is written outside', async (t) => {
  const root = await tempStore();
  const cases: [string, string][] = [
    ['dotdot.mar', '../escaped-by-torchd-test.txt'],
    ['absolute.mar', '/tmp/escaped-by-torchd-test-abs.txt'],
  ];
  for (const [file, evil] of cases) {
    const buf = await zipWithRawNames([
      { name: 'MAR-INF/MANIFEST.json', data: manifest({ modelName: 'evil', serializedFile: 'add2.pt', handler: 'tensor' }) },
      { name: evil, data: Buffer.from('pwned') },
    ]);
    await writeFile(path.join(root, file), buf);
    await t.throwsAsync(createModelStore(root).load(file), {
      instanceOf: BadRequestError,
      message: `Archive ${file} has an entry that escapes the extraction folder: ${evil}`,
    });
  }
  await t.throwsAsync(stat('/tmp/escaped-by-torchd-test-abs.txt'));
  for (const dir of (await readdir(os.tmpdir())).filter((d) => d.startsWith('torchd-store-'))) {
    t.false((await readdir(path.join(os.tmpdir(), dir))).includes('escaped-by-torchd-test.txt'), dir);
  }
});

test('a serializedFile that is not TorchScript is refused with how to export it', async (t) => {
  const root = await tempStore();
  const dir = await explodedDir(root, 'sd', { modelName: 'sd', serializedFile: 'state_dict.pt', handler: 'tensor' });
  await copyFile(fx('state_dict.pt'), path.join(dir, 'state_dict.pt'));
  await t.throwsAsync(createModelStore(root).load('sd'), {
    instanceOf: BadRequestError,
    message: 'serializedFile state_dict.pt is not TorchScript (it has no code/ section: a torch.save() state dict or pickled module?): ' +
      'export it with torch.jit.script(model).save("model.pt") (or torch.jit.trace(model, example_input).save(...)) and archive that file',
  });
  const legacy = await explodedDir(root, 'pickle', { modelName: 'p', serializedFile: 'model.pth', handler: 'tensor' });
  await writeFile(path.join(legacy, 'model.pth'), Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20]));
  const err = await t.throwsAsync(createModelStore(root).load('pickle'), { instanceOf: BadRequestError });
  t.true(err!.message.startsWith('serializedFile model.pth is not TorchScript (not a TorchScript zip archive; a torch.save() pickle?)'));
});

test('a Python handler is refused unless the model config names a built-in handler', async (t) => {
  const root = await tempStore();
  const dir = await explodedDir(root, 'py', { modelName: 'custom', serializedFile: 'mnist.pt', handler: 'mnist_handler.py' });
  await copyFile(fx('mnist.pt'), path.join(dir, 'mnist.pt'));
  const store = createModelStore(root);
  await t.throwsAsync(store.load('py'), {
    instanceOf: BadRequestError,
    message: 'Model custom: handler "mnist_handler.py" is a Python file; torchd runs no Python. Add a model-config.yaml naming a built-in handler instead, ' +
      'e.g. "handler: {name: image_classifier}" (supported: image_classifier, tensor, mnist)',
  });
  await writeFile(path.join(dir, 'model-config.yaml'), 'handler:\n  name: image_classifier\n  preset: mnist\n');
  const spec = await store.load('py');
  t.is(spec.handler.name, 'image_classifier');
  t.is(spec.handler.output, 'argmax');
  t.is(spec.handler.channels, 1);
});

test('model config: unknown keys and bad values are refused naming the key; JSON config and configFile work', async (t) => {
  const root = await tempStore();
  const dir = await explodedDir(root, 'cfg', { modelName: 'cfg', serializedFile: 'add2.pt', handler: 'tensor' });
  await copyFile(fx('add2.pt'), path.join(dir, 'add2.pt'));
  const store = createModelStore(root);
  const bad: [string, string][] = [
    ['handler:\n  name: tensor\n  resize: 256\n', 'model-config.yaml: unknown key "resize" in handler (allowed: name, preset, image_size, crop_size, channels, mean, std, topk, output, fast_decode)'],
    ['handler:\n  name: image_classifier\n  fast_decode: "yes"\n', 'model-config.yaml: handler.fast_decode: Invalid input: expected boolean, received string'],
    ['batchsize: 4\n', 'model-config.yaml: unknown key "batchsize" in the top level (allowed: batchSize, maxBatchDelay, minWorkers, maxWorkers, responseTimeout, jobQueueSize, device, precision, optimize, allowNonFinite, igMemoryBudget, handler, inputs, outputs)'],
    ['batchSize: 0\n', 'model-config.yaml: batchSize: Too small: expected number to be >0'],
    ['device: tpu\n', 'model-config.yaml: device: expected cpu, cuda or cuda:N'],
    ['handler:\n  name: detector\n', 'Model cfg: model config handler.name "detector" is not a built-in handler (supported: image_classifier, tensor, mnist)'],
    ['handler:\n  name: image_classifier\n  channels: 1\n', 'Model cfg: model config handler.mean has 3 values but channels is 1'],
  ];
  for (const [yaml, message] of bad) {
    await writeFile(path.join(dir, 'model-config.yaml'), yaml);
    await t.throwsAsync(store.load('cfg'), { instanceOf: BadRequestError, message }, yaml);
  }
  // TorchServe keys torchd does not use are accepted (users bring their files); deviceType maps to device.
  await writeFile(path.join(dir, 'model-config.yaml'), 'minWorkers: 1\nmaxWorkers: 2\ndeviceType: cpu\nparallelType: pp\nprecision: fp16\noptimize: false\n');
  t.deepEqual((await store.load('cfg')).settings, { minWorkers: 1, maxWorkers: 2, device: 'cpu', precision: 'fp16', optimize: false });
  await writeFile(path.join(dir, 'model-config.yaml'), '');
  await writeFile(path.join(dir, 'MAR-INF', 'MANIFEST.json'), manifest({ modelName: 'cfg', serializedFile: 'add2.pt', handler: 'tensor', configFile: 'conf.json' }));
  await writeFile(path.join(dir, 'conf.json'), JSON.stringify({ batchSize: 4, responseTimeout: 30 }));
  t.deepEqual((await store.load('cfg')).settings, { batchSize: 4, responseTimeout: 30 });
});

test('paths outside the model store are refused', async (t) => {
  const parent = await tempStore();
  const root = path.join(parent, 'store');
  await mkdir(root);
  await writeMar({ modelName: 'outside', version: '1.0', serializedFile: fx('add2.pt'), handler: 'tensor', exportPath: parent });
  await symlink(path.join(parent, 'outside.mar'), path.join(root, 'link.mar'));
  const store = createModelStore(root);
  for (const url of ['../outside.mar', path.join(parent, 'outside.mar'), 'link.mar', '../nonexistent.mar', '/etc/passwd']) {
    await t.throwsAsync(store.load(url), { instanceOf: BadRequestError, message: `Model URL ${url} is outside the model store ${root}` }, url);
  }
  await t.throwsAsync(store.load('missing.mar'), { instanceOf: BadRequestError, message: `Model archive missing.mar not found in the model store ${root}` });
  await t.throwsAsync(store.load('https://example.com/m.mar'), { instanceOf: BadRequestError });
  await t.throwsAsync(store.load('.'), { instanceOf: BadRequestError, message: `Model URL . is outside the model store ${root}` });
});

test('an archive without MANIFEST and a corrupt archive are refused', async (t) => {
  const root = await tempStore();
  await writeFile(path.join(root, 'random.mar'), Buffer.from('definitely not a zip file'));
  const err = await t.throwsAsync(createModelStore(root).load('random.mar'), { instanceOf: BadRequestError });
  t.regex(err!.message, /^Archive random\.mar is not a readable zip file: /);
  const empty = await zipWithRawNames([{ name: 'readme.txt', data: Buffer.from('hi') }]);
  await writeFile(path.join(root, 'nomanifest.mar'), empty);
  await t.throwsAsync(createModelStore(root).load('nomanifest.mar'), {
    instanceOf: BadRequestError,
    message: 'Model archive nomanifest.mar has no MAR-INF/MANIFEST.json; build it with "torchd archive" or TorchServe\'s torch-model-archiver',
  });
});

test('model config declares inputs/outputs (KServe v2 metadata); a bad declaration names the key', async (t) => {
  const root = await tempStore();
  const dir = await explodedDir(root, 'adder', { modelName: 'adder', serializedFile: 'model.pt', handler: 'tensor' });
  await copyFile(fx('add2.pt'), path.join(dir, 'model.pt'));
  await writeFile(
    path.join(dir, 'model-config.yaml'),
    'inputs:\n  - {name: a, datatype: FP32, shape: [-1, 4]}\n  - {name: b, datatype: FP32, shape: [-1, 4]}\n' +
      'outputs:\n  - {name: sum, datatype: FP32, shape: [-1, 4]}\n',
  );
  const spec = await createModelStore(root).load('adder');
  t.deepEqual(spec.inputs, [
    { name: 'a', datatype: 'FP32', shape: [-1, 4], dtype: 'float32' },
    { name: 'b', datatype: 'FP32', shape: [-1, 4], dtype: 'float32' },
  ]);
  t.deepEqual(spec.outputs, [{ name: 'sum', datatype: 'FP32', shape: [-1, 4], dtype: 'float32' }]);

  await writeFile(path.join(dir, 'model-config.yaml'), 'inputs:\n  - {name: a, datatype: FLOAT, shape: [4]}\n');
  const err = await t.throwsAsync(createModelStore(root).load('adder'), { instanceOf: BadRequestError });
  t.regex(err!.message, /^model-config\.yaml: inputs\.0\.datatype: /);
});
