// The TFLite → TorchScript converter (scripts/convert_tflite_mobilenet_v2.py) run on the real uint8 MobileNetV2
// of ../shared/data, then served by torchd like the demo serves it: real photos must come back as their classes.
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeMar } from '../../src/store/index.js';
import { call, startOnStore, type TestServer } from '../http/_server.js';
import { missingData, REPO_ROOT, sharedData } from '../fixtures/shared-data.js';

const run = promisify(execFile);
const CONVERTER = join(REPO_ROOT, 'scripts', 'convert_tflite_mobilenet_v2.py');
const TFLITE = 'mobilenet_v2/mobilenet_v2_1.0_224_quant.tflite';
const dataDir = sharedData('mobilenet_v2/imagenet_labels.txt') && sharedData(TFLITE) ? sharedData('mobilenet_v2')! : undefined;
if (!dataDir) console.log(`mobilenet-v2.test.ts: ${missingData(TFLITE)}`);
const maybe = dataDir ? test : test.skip;

let work: string;
let srv: TestServer | undefined;
test.before(async () => {
  if (!dataDir) return;
  work = await mkdtemp(join(tmpdir(), 'torchd-mnv2-'));
  const out = join(work, 'converted');
  await run('/usr/bin/python3', [CONVERTER, '--data', dataDir, '--out', out], { timeout: 90_000 });
  const store = join(work, 'store');
  await writeMar({ modelName: 'mobilenet_v2', version: '1.0', serializedFile: join(out, 'model.pt'), handler: 'image_classifier',
    extraFiles: [join(out, 'index_to_name.json')], exportPath: store });
  srv = await startOnStore(store, 'mobilenet_v2=mobilenet_v2.mar');
});
test.after.always(async () => {
  await srv?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

async function classify(photo: string): Promise<[string, number][]> {
  const r = await call(`${srv!.url}/predictions/mobilenet_v2`, { method: 'PUT', body: await readFile(join(dataDir!, photo)) });
  if (r.status !== 200) throw new Error(`${photo}: HTTP ${r.status} ${r.text}`);
  return Object.entries(r.json as Record<string, number>);
}

maybe('cat_720p.jpg: a cat class first (Egyptian cat ≈ 0.95, as the conversion gave in Python)', async (t) => {
  const top = await classify('cat_720p.jpg');
  t.is(top.length, 5);
  t.is(top[0][0], 'Egyptian cat', JSON.stringify(top));
  t.true(top[0][1] > 0.9 && top[0][1] < 0.99, JSON.stringify(top));
  t.true(top.slice(0, 3).every(([label]) => /cat|tabby/.test(label)), JSON.stringify(top));
});

maybe('parrot.jpg: "macaw" ≈ 0.997 (output 0 "background" dropped: 1000 classes, ImageNet order)', async (t) => {
  const top = await classify('parrot.jpg');
  t.is(top[0][0], 'macaw', JSON.stringify(top));
  t.true(top[0][1] > 0.99, JSON.stringify(top));
});

maybe('the converter refuses a file whose sha256 is not the one it knows', async (t) => {
  const bad = join(work, 'bad');
  await run('mkdir', ['-p', bad]);
  const bytes = await readFile(join(dataDir!, 'mobilenet_v2_1.0_224_quant.tflite'));
  bytes[bytes.length - 1] ^= 1;
  await writeFile(join(bad, 'mobilenet_v2_1.0_224_quant.tflite'), bytes);
  await copyFile(join(dataDir!, 'imagenet_labels.txt'), join(bad, 'imagenet_labels.txt'));
  const err = await run('/usr/bin/python3', [CONVERTER, '--data', bad, '--out', join(work, 'never')], { timeout: 60_000 })
    .then(() => undefined, (e: { code: number; stderr: string }) => e);
  t.truthy(err, 'the converter accepted a modified file');
  t.is(err!.code, 1);
  t.regex(err!.stderr, /sha256 [0-9a-f]{64}, expected 7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776/);
});
