// `torchd archive` (runArchive): archives load back through the model store and serve; non-TorchScript
// files and unsafe names are refused before anything is written.
import test from 'ava';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import yauzl from 'yauzl';
import yazl from 'yazl';
import { runArchive } from '../../src/archiver/index.js';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { BadRequestError, ConflictError } from '../../src/errors.js';
import { createModelStore } from '../../src/store/index.js';
import { HERE, MODELS, makeEnv } from '../fixtures/v2/servers.js';

async function zipEntries(file: string): Promise<Map<string, Buffer>> {
  const zip = await yauzl.openPromise(file, { lazyEntries: true, autoClose: false });
  const out = new Map<string, Buffer>();
  await new Promise<void>((resolve, reject) => {
    zip.on('entry', (entry: yauzl.Entry) => {
      zip.openReadStream(entry, (err, stream) => {
        if (err) return reject(err);
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          out.set(entry.fileName, Buffer.concat(chunks));
          zip.readEntry();
        });
      });
    });
    zip.on('end', () => resolve());
    zip.on('error', reject);
    zip.readEntry();
  });
  zip.close();
  return out;
}

test('a tensor model archive round-trips through the model store and serves', async (t) => {
  const env = await makeEnv();
  t.teardown(env.cleanup);
  const path = await runArchive({
    modelName: 'adder', version: '2.1', serializedFile: join(HERE, 'two_inputs.pt'), handler: 'tensor', exportPath: env.store,
  });
  t.is(path, join(env.store, 'adder.mar'));

  const entries = await zipEntries(path);
  t.deepEqual([...entries.keys()].sort(), ['MAR-INF/MANIFEST.json', 'two_inputs.pt']);
  const manifest = JSON.parse(entries.get('MAR-INF/MANIFEST.json')!.toString());
  // The fields TorchServe's MANIFEST reader needs.
  t.is(manifest.runtime, 'python');
  t.deepEqual(manifest.model, { modelName: 'adder', modelVersion: '2.1', serializedFile: 'two_inputs.pt', handler: 'tensor' });
  t.is(typeof manifest.archiverVersion, 'string');
  t.deepEqual(entries.get('two_inputs.pt'), await readFile(join(HERE, 'two_inputs.pt')));

  const spec = await createModelStore(env.store).load('adder.mar');
  t.is(spec.name, 'adder');
  t.is(spec.version, '2.1');
  t.is(spec.handler.name, 'tensor');
  const mv = await env.registry.register(spec, {});
  const out = await mv.batcher.infer([
    { data: Float32Array.of(1, 2), shape: [1, 2], dtype: 'float32' },
    { data: Float32Array.of(10, 20), shape: [1, 2], dtype: 'float32' },
  ]) as Array<{ data: Float32Array }>;
  t.deepEqual(Array.from(out[0].data), [21, 42]);
  t.deepEqual(Array.from(out[1].data), [50]);
});

test('an image model archive keeps its config and labels', async (t) => {
  const env = await makeEnv();
  t.teardown(env.cleanup);
  await runArchive({
    modelName: 'digits', version: '1.0', serializedFile: join(MODELS, 'mnist.pt'), handler: 'image_classifier',
    config: join(MODELS, 'mnist-config.yaml'), extraFiles: [join(MODELS, 'index_to_name.json')], exportPath: env.store,
  });
  const spec = await createModelStore(env.store).load('digits.mar');
  t.is(spec.handler.name, 'image_classifier');
  t.is(spec.handler.channels, 1);
  t.is(spec.handler.output, 'argmax');
  t.deepEqual(spec.handler.mean, [0.1307]);
  t.is(spec.settings.batchSize, 8);
  t.truthy(spec.labels);
});

test('non-TorchScript files are refused with how to export them, and nothing is written', async (t) => {
  const env = await makeEnv();
  t.teardown(env.cleanup);
  const pickled = await t.throwsAsync(
    runArchive({ modelName: 'sd', version: '1', serializedFile: join(HERE, 'state_dict_not_torchscript.pt'), handler: 'tensor', exportPath: env.store }),
    { instanceOf: BadRequestError },
  );
  t.regex(pickled!.message, /state_dict_not_torchscript\.pt is not TorchScript .*torch\.jit\.script\(model\)\.save/);

  // Shaped like TorchScript (code/ and constants.pkl entries) but not loadable: LibTorch itself refuses it.
  const fake = join(env.root, 'fake.pt');
  const zip = new yazl.ZipFile();
  zip.addBuffer(Buffer.from('def forward(self): pass'), 'fake/code/__torch__.py');
  zip.addBuffer(Buffer.from('junk'), 'fake/constants.pkl');
  zip.addBuffer(Buffer.from('junk'), 'fake/data.pkl');
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(fake));
  const bad = await t.throwsAsync(
    runArchive({ modelName: 'fake', version: '1', serializedFile: fake, handler: 'tensor', exportPath: env.store }),
    { instanceOf: BadRequestError },
  );
  t.regex(bad!.message, /fake\.pt could not be loaded as TorchScript by LibTorch: .+Export it with torch\.jit\.script/);
  await writeFile(join(env.root, 'text.pt'), 'not a model');
  await t.throwsAsync(
    runArchive({ modelName: 'text', version: '1', serializedFile: join(env.root, 'text.pt'), handler: 'tensor', exportPath: env.store }),
    { instanceOf: BadRequestError, message: /text\.pt is not TorchScript/ },
  );
  t.deepEqual(await readdir(env.store), []);
});

test('unsafe names, unknown handlers, missing files and existing archives are refused', async (t) => {
  const env = await makeEnv();
  t.teardown(env.cleanup);
  const base = { modelName: 'm', version: '1.0', serializedFile: join(HERE, 'echo.pt'), handler: 'tensor', exportPath: env.store };
  const cases: Array<[string, object, RegExp]> = [
    ['name with ..', { modelName: '../escape' }, /Invalid model name "\.\.\/escape"/],
    ['name with /', { modelName: 'a/b' }, /Invalid model name "a\/b"/],
    ['version with /', { version: '1/../../x' }, /Invalid model version/],
    ['unknown handler', { handler: 'my_handler.py' }, /Unknown handler "my_handler\.py": use one of image_classifier, tensor/],
    ['missing extra file', { extraFiles: [join(env.root, 'nope.json')] }, /File to archive not found: .*nope\.json/],
  ];
  for (const [what, o, message] of cases) {
    const err = await t.throwsAsync(runArchive({ ...base, ...o }), { instanceOf: BadRequestError }, what);
    t.regex(err!.message, message, what);
  }
  t.deepEqual(await readdir(env.store), []);
  t.deepEqual((await readdir(env.root)).sort(), ['store']);

  const first = await runArchive(base);
  const before = (await stat(first)).mtimeMs;
  await t.throwsAsync(runArchive(base), { instanceOf: ConflictError, message: /already exists; use force/ });
  await new Promise((r) => setTimeout(r, 20));
  t.is(await runArchive({ ...base, force: true }), first);
  t.true((await stat(first)).mtimeMs >= before);
});
