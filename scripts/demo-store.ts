// The demo's model store (scripts/demo, and the tests that run the seed's commands against the same models):
//   mnist 1.0 (default) and 2.0    the committed digit CNN and its (d + 1) % 10 variant, MNIST model config
//   resnet-18 2.0, squeezenet1_1 1.0 ONE image classifier under the seed document's two names (resnet-18 is 2.0
//                                  because the seed asks /predictions/resnet-18/2.0): a user's TORCHD_DEMO_MODEL,
//                                  else the MobileNetV2 converted from ../shared/data by scripts/setup, else the
//                                  random-weight ResNet-18 fixture
//   mobilenet_v2 1.0               the same model under its own name, only when it is the converted MobileNetV2
// CLI: node --import tsx scripts/demo-store.ts DIR   (prints the --models list, logs the choice on stderr)
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeMar } from '../src/store/index.js';

const F = fileURLToPath(new URL('../test/fixtures/models/', import.meta.url));

export interface ImageClassifierChoice {
  kind: 'user' | 'mobilenet_v2' | 'random-resnet18';
  model: string;
  labels: string;
  /** One line for a log: what the seed's image names will answer with. */
  description: string;
}

/** The image classifier the demo serves under the seed's names (see the file comment for the order). */
export function chooseImageClassifier(env: NodeJS.ProcessEnv = process.env): ImageClassifierChoice {
  if (env.TORCHD_DEMO_MODEL) {
    return { kind: 'user', model: resolve(env.TORCHD_DEMO_MODEL), labels: join(F, 'index_to_name.json'),
      description: `${env.TORCHD_DEMO_MODEL} (TORCHD_DEMO_MODEL) with torchvision's ImageNet labels` };
  }
  if (existsSync(join(F, 'mobilenet_v2', 'model.pt'))) {
    return { kind: 'mobilenet_v2', model: join(F, 'mobilenet_v2', 'model.pt'), labels: join(F, 'mobilenet_v2', 'index_to_name.json'),
      description: 'MobileNetV2 with real ImageNet weights (converted by scripts/setup from ../shared/data/mobilenet_v2)' };
  }
  return { kind: 'random-resnet18', model: join(F, 'resnet18.pt'), labels: join(F, 'index_to_name.json'),
    description: 'ResNet-18 with RANDOM weights (no ../shared/data/mobilenet_v2 was converted, no TORCHD_DEMO_MODEL): its answers mean nothing' };
}

/** The `--models` list that loads the demo store written for `image` (mnist 1.0 first: the default version). */
export function demoModels(image: ImageClassifierChoice): string {
  const names = ['mnist=mnist.mar', 'mnist=mnist-v2.mar', ...(image.kind === 'mobilenet_v2' ? ['mobilenet_v2=mobilenet_v2.mar'] : []),
    'resnet-18=resnet-18.mar', 'squeezenet1_1=squeezenet1_1.mar'];
  return names.join(',');
}

/** The image classifier's names and versions in the store (see the file comment). */
function imageNames(image: ImageClassifierChoice): [string, string][] {
  return [...(image.kind === 'mobilenet_v2' ? [['mobilenet_v2', '1.0'] as [string, string]] : []), ['resnet-18', '2.0'], ['squeezenet1_1', '1.0']];
}

/** Writes the demo's archives into `store` (created if needed); returns the image classifier chosen. */
export async function writeDemoStore(store: string, image = chooseImageClassifier()): Promise<ImageClassifierChoice> {
  await mkdir(store, { recursive: true });
  const common = { handler: 'image_classifier', configFile: join(F, 'mnist-config.yaml'), force: true };
  await writeMar({ ...common, modelName: 'mnist', version: '1.0', serializedFile: join(F, 'mnist.pt'), exportPath: store });
  // Version 2.0 of the same name: written aside, stored as mnist-v2.mar.
  const aside = await mkdtemp(join(tmpdir(), 'torchd-demo-'));
  await copyFile(await writeMar({ ...common, modelName: 'mnist', version: '2.0', serializedFile: join(F, 'mnist_v2.pt'), exportPath: aside }), join(store, 'mnist-v2.mar'));
  await rm(aside, { recursive: true });
  if (!existsSync(image.model)) throw new Error(`${image.model} is missing: run ./scripts/setup`);
  for (const [modelName, version] of imageNames(image)) {
    await writeMar({ modelName, version, serializedFile: image.model, handler: 'image_classifier', extraFiles: [image.labels], exportPath: store, force: true });
  }
  return image;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const store = process.argv[2];
  if (!store) {
    console.error('usage: node --import tsx scripts/demo-store.ts DIR');
    process.exit(2);
  }
  const image = await writeDemoStore(store);
  console.error(`image classifier behind mobilenet_v2, resnet-18 and squeezenet1_1: ${image.description}`);
  console.log(demoModels(image));
}
