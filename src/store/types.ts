// Contract of the model store: turns a .mar archive or an exploded directory into a ModelSpec.
import type { ModelSpec } from '../engine/types.js';

export interface ModelStore {
  /** Absolute path of the --model-store folder. */
  readonly root: string;
  /**
   * Reads (and for a .mar, extracts) `url`: a file or directory name relative to the store, or an absolute
   * path inside it. Throws BadRequestError for paths escaping the store, zip entries with `../`, a missing
   * MANIFEST, a non-TorchScript serializedFile, or a Python handler without a built-in `handler.name`.
   * `modelName` overrides the MANIFEST's name.
   */
  load(url: string, options?: { modelName?: string }): Promise<ModelSpec>;
  /** Archive files and model directories found at the top of the store. */
  list(): Promise<string[]>;
}
