// Child-process script for image-workers.test.ts: preprocesses one image and returns from the module without
// closeImageWorkers(). The process must exit by itself (idle workers are unref'd); it prints the tensor's shape.
import { readFileSync } from 'node:fs';
import { imageToTensor, imageWorkerThreadIds } from '../../src/handlers/image.js';

const t = await imageToTensor(readFileSync(new URL('../fixtures/models/sample.jpg', import.meta.url)), {
  channels: 3, image_size: 256, crop_size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225],
});
console.log(JSON.stringify({ shape: t.shape, threads: imageWorkerThreadIds().length }));
