// Child process of weight-sharing.test.ts: loads one model with N workers through the registry,
// runs N forwards at once so every worker thread has touched the model, and prints the RSS growth.
// Usage: node --import tsx test/engine/rss-child.ts MODEL.pt WORKERS FEATURES
import type { LoadedModelVersion } from '../../src/engine/registry.js';
import { f32, makeRegistry, specFor } from './helpers.js';

const [file, workersArg, featuresArg] = process.argv.slice(2);
const workers = Number(workersArg);
const features = Number(featuresArg);

// Let LibTorch's own start-up allocations happen before the baseline (load a tiny model first).
const warm = makeRegistry({ cores: workers });
await warm.register(specFor('rows.pt', 'warm'), {});
await warm.resolve('warm').batcher.infer([f32([[1, 2, 3, 4]])]);

const registry = makeRegistry({ cores: workers });
const before = process.memoryUsage().rss;
const mv = await registry.register(specFor(file, 'big'), { minWorkers: workers, maxWorkers: workers, batchSize: 1 });
const row = Array.from({ length: features }, (_, i) => (i % 7) / 7);
await Promise.all(Array.from({ length: workers * 2 }, () => mv.batcher.infer([f32([row])])));
const after = process.memoryUsage().rss;
process.stdout.write(JSON.stringify({ workers: (mv as LoadedModelVersion).executorThreads, parameterBytes: mv.info.parameterBytes, growth: after - before }) + '\n');
await registry.close();
await warm.close();
