// Model store: archives and exploded directories → ModelSpec; .mar writing.
export type { ModelStore } from './types.js';
export { createModelStore, readModelDir, assertTorchScript, labelsFromIndexToName } from './model-store.js';
export { writeMar, ARCHIVER_VERSION, type WriteMarOptions } from './archive-writer.js';
export { PRESETS, resolveHandler, parseModelConfig } from './model-config.js';
