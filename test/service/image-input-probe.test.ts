// A non-resizing image model's input size is known before its first image: the registry probes the forward with a
// ladder of square sizes at registration. A model that takes one size (the digit model, 28×28) refuses any other
// size from the image header; a model with adaptive pooling takes several sizes, so no size is pinned (neither by
// the probe nor by the first answered image) and only the pixel budget applies. Real LibTorch, real server.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { LoadedModelVersion } from '../../src/engine/registry.js';
import { writeMar } from '../../src/store/index.js';
import { makeRegistry, specFor } from '../engine/helpers.js';
import { pngHeaderOnly } from '../handlers/helpers.js';
import { call, fixture, makeModelStore, startOnStore, type TestServer } from '../http/_server.js';

// Recipe of the adaptive-pooling model: a 1-channel conv, global average pooling (any H×W ≥ 1), 3 logits.
const POOLED_RECIPE = `
import sys, torch, torch.nn as nn
torch.manual_seed(0)
class Pooled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))
torch.jit.script(Pooled().eval()).save(sys.argv[1])
`;

const NO_RESIZE_CONFIG = `handler:
  name: image_classifier
  channels: 1
  image_size: null
  crop_size: null
  mean: [0.5]
  std: [0.5]
  output: argmax
`;

let scratch: string;
let pooledPt: string;
let srv: TestServer;

test.before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'torchd-probe-'));
  pooledPt = join(scratch, 'pooled.pt');
  // torch.jit.script reads the class's source, so the recipe runs from a file.
  const recipe = join(scratch, 'make_pooled.py');
  await writeFile(recipe, POOLED_RECIPE);
  execFileSync('/usr/bin/python3', [recipe, pooledPt]);
  const config = join(scratch, 'pooled-config.yaml');
  await writeFile(config, NO_RESIZE_CONFIG);
  const store = await makeModelStore(['mnist']);
  await writeMar({ modelName: 'pooled', version: '1.0', serializedFile: pooledPt, handler: 'image_classifier', configFile: config, exportPath: store });
  srv = await startOnStore(store, 'mnist=mnist.mar,pooled=pooled.mar');
});
test.after.always(async () => {
  await srv?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const grey = (side: number) => sharp({ create: { width: side, height: side, channels: 3, background: { r: 90, g: 90, b: 90 } } }).png().toBuffer();

function noResizeSpec(file: string, name: string) {
  const spec = specFor(file, name);
  spec.handler = { name: 'image_classifier', image_size: null, crop_size: null, channels: 1, mean: [0.5], std: [0.5], topk: 5, output: 'argmax' };
  return spec;
}

test('registry: the digit model is probed to exactly 28×28, and the probe forward settles the optimised module', async (t) => {
  const registry = makeRegistry();
  const mv = (await registry.register(noResizeSpec(fixture('mnist.pt'), 'digits'), {})) as LoadedModelVersion;
  t.deepEqual(mv.imageInput, { size: [28, 28] });
  t.is(mv.optimization.serving, 'optimized');
  await registry.close();
});

test('registry: onLoaded listeners (the service builds the handler there) see the probed version before it can be resolved', async (t) => {
  const registry = makeRegistry();
  const seen: unknown[] = [];
  registry.onLoaded((mv) => {
    seen.push(mv.imageInput);
    t.throws(() => registry.resolve(mv.spec.name), { message: `Model not found: ${mv.spec.name}` });
  });
  await registry.register(noResizeSpec(fixture('mnist.pt'), 'digits'), {});
  t.deepEqual(seen, [{ size: [28, 28] }]);
  t.is(registry.resolve('digits').spec.name, 'digits');
  // A listener that throws fails the registration; the version is not left registered.
  registry.onLoaded(() => {
    throw new Error('no handler for this model');
  });
  const err = await t.throwsAsync(registry.register(noResizeSpec(fixture('mnist.pt'), 'broken'), {}));
  t.is(err!.message, 'Failed to load model broken version 1.0: no handler for this model');
  t.throws(() => registry.resolve('broken'));
  await registry.close();
});

test('registry: a model with adaptive pooling takes several sizes, so no size is pinned', async (t) => {
  const registry = makeRegistry();
  const mv = await registry.register(noResizeSpec(pooledPt, 'pooled'), {});
  t.deepEqual(mv.imageInput, { size: null });
  await registry.close();
});

test('registry: a model that takes no image at all gives no size (the pixel budget applies), and registration still succeeds', async (t) => {
  const registry = makeRegistry();
  // rows.pt takes [N, 4] rows: every [1, 1, S, S] forward fails.
  const mv = await registry.register(noResizeSpec('rows.pt', 'rows'), {});
  t.is(mv.imageInput, undefined);
  t.is(mv.optimization.serving, 'pending');
  await registry.close();
});

test('server: the digit model refuses a 64×64 image from its header on its very first request, then answers a 28×28 digit', async (t) => {
  const wrong = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body: new Uint8Array(await grey(64)) });
  t.is(wrong.status, 400);
  t.is((wrong.json as { message: string }).message,
    'Image is 64x64 pixels but model mnist takes 28x28 images and its handler does not resize (handler.image_size is null); refused before decoding');
  const digit = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body: new Uint8Array(readFileSync(fixture('images/7.png'))) });
  t.is(digit.status, 200, digit.text);
  t.is(digit.json, 7);
});

test('server: describe shows the probed size ([28, 28] for the digit model, null for the adaptive one)', async (t) => {
  const sizeOf = async (model: string) => ((await call(`${srv.server.addresses.management}/models/${model}`)).json as { probedImageSize?: unknown }[])[0].probedImageSize;
  t.deepEqual(await sizeOf('mnist'), [28, 28]);
  t.is(await sizeOf('pooled'), null);
});

test('server: the adaptive-pooling model answers a 32×32 and then a 64×64 image (the first answer pins nothing)', async (t) => {
  for (const side of [32, 64, 32]) {
    const r = await call(`${srv.url}/predictions/pooled`, { method: 'PUT', body: new Uint8Array(await grey(side)) });
    t.is(r.status, 200, `${side}×${side}: ${r.text}`);
    t.true([0, 1, 2].includes(r.json as number), r.text);
  }
  // Without a fixed size the pixel budget bounds decoding.
  const bomb = await call(`${srv.url}/predictions/pooled`, { method: 'PUT', body: new Uint8Array(pngHeaderOnly(9999, 9999)) });
  t.is(bomb.status, 400);
  t.is((bomb.json as { message: string }).message,
    'Image too large: 9999x9999 = 99980001 pixels exceeds max_image_pixels (40000000); refused before decoding');
});
