// The --model-store folder: .mar archives (extracted once into a cache folder) and exploded directories → ModelSpec.
import { createHash, randomUUID } from 'node:crypto';
import { readFile, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { BadRequestError } from '../errors.js';
import type { ModelSpec, TensorMetadata } from '../engine/types.js';
import type { DType } from '../native.js';
import type { ModelStore } from './types.js';
import { extractZip, listZipEntries } from './zip.js';
import { checkName } from './names.js';
import { manifestSchema, parseModelConfig, resolveHandler, settingsFromConfig, type Manifest, type ModelConfig } from './model-config.js';

const MANIFEST = 'MAR-INF/MANIFEST.json';
const CONFIG_NAMES = ['model-config.yaml', 'model-config.yml', 'model-config.json'];

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}

/** Resolves `rel` inside `dir`, refusing names that climb out of it. */
function inside(dir: string, rel: string, what: string): string {
  const target = path.resolve(dir, rel);
  const back = path.relative(dir, target);
  if (back === '' || back.startsWith('..') || path.isAbsolute(back)) {
    throw new BadRequestError(`${what} "${rel}" is outside the model archive`);
  }
  return target;
}

/**
 * Cheap TorchScript check without loading: torch.jit.save writes a zip whose entries include
 * `<archive>/code/…` and `<archive>/constants.pkl`; torch.save() of a module or state dict has neither.
 */
export async function assertTorchScript(file: string, shownName: string): Promise<void> {
  const howTo = 'export it with torch.jit.script(model).save("model.pt") (or torch.jit.trace(model, example_input).save(...)) and archive that file';
  let names: string[];
  try {
    names = await listZipEntries(file);
  } catch {
    throw new BadRequestError(`serializedFile ${shownName} is not TorchScript (not a TorchScript zip archive; a torch.save() pickle?): ${howTo}`);
  }
  const hasCode = names.some((n) => /^[^/]+\/code\//.test(n));
  const hasConstants = names.some((n) => /^[^/]+\/constants\.pkl$/.test(n));
  if (!hasCode || !hasConstants) {
    throw new BadRequestError(`serializedFile ${shownName} is not TorchScript (it has no code/ section: a torch.save() state dict or pickled module?): ${howTo}`);
  }
}

/** index_to_name.json → index → label (last element of a list value; a string value as is). */
export function labelsFromIndexToName(raw: unknown, file: string): Record<string, string> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new BadRequestError(`${file}: expected an object like {"0": ["n01440764", "tench"]}`);
  }
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value === 'string') labels[key] = value;
    else if (Array.isArray(value) && value.length > 0 && typeof value[value.length - 1] === 'string') labels[key] = value[value.length - 1];
    else throw new BadRequestError(`${file}: label for "${key}" must be a string or a list ending with a string`);
  }
  return labels;
}

async function readJson(file: string, shown: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new BadRequestError(`${shown} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Reads and validates the archive at `dir` (extracted or exploded) into a ModelSpec. */
export async function readModelDir(dir: string, url: string, modelName?: string): Promise<ModelSpec> {
  const manifestPath = path.join(dir, MANIFEST);
  if (!(await exists(manifestPath))) {
    throw new BadRequestError(`Model archive ${url} has no ${MANIFEST}; build it with "torchd archive" or TorchServe's torch-model-archiver`);
  }
  const parsedManifest = manifestSchema.safeParse(await readJson(manifestPath, `${url}: ${MANIFEST}`));
  if (!parsedManifest.success) {
    const issue = parsedManifest.error.issues[0];
    throw new BadRequestError(`${url}: ${MANIFEST}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
  }
  const manifest: Manifest = parsedManifest.data;
  const name = modelName ?? manifest.model.modelName;
  if (!name) throw new BadRequestError(`${url}: ${MANIFEST} has no model.modelName`);
  checkName(name, 'model name');
  const version = manifest.model.modelVersion !== undefined ? String(manifest.model.modelVersion) : '1.0';
  checkName(version, 'model version', ` for model ${name}`);

  // Model config: named by the MANIFEST, else model-config.{yaml,yml,json} at the archive root.
  let config: ModelConfig = {};
  let configFile: string | undefined;
  if (manifest.model.configFile) {
    configFile = inside(dir, manifest.model.configFile, 'model.configFile');
    if (!(await exists(configFile))) throw new BadRequestError(`${url}: model.configFile ${manifest.model.configFile} is not in the archive`);
  } else {
    for (const candidate of CONFIG_NAMES) {
      if (await exists(path.join(dir, candidate))) {
        configFile = path.join(dir, candidate);
        break;
      }
    }
  }
  if (configFile) {
    const shown = path.relative(dir, configFile);
    let raw: unknown;
    try {
      raw = YAML.parse(await readFile(configFile, 'utf8')); // YAML is a superset of JSON: one parser for both
    } catch (err) {
      throw new BadRequestError(`${shown}: not valid YAML/JSON: ${(err as Error).message}`);
    }
    config = parseModelConfig(shown, raw);
  }

  const handler = resolveHandler(name, manifest.model.handler, config.handler);

  if (!manifest.model.serializedFile) {
    throw new BadRequestError(`${url}: ${MANIFEST} has no model.serializedFile; torchd serves TorchScript files (torch.jit.script(model).save("model.pt"))`);
  }
  const serializedFile = inside(dir, manifest.model.serializedFile, 'serializedFile');
  if (!(await exists(serializedFile))) throw new BadRequestError(`${url}: serializedFile ${manifest.model.serializedFile} is not in the archive`);
  await assertTorchScript(serializedFile, manifest.model.serializedFile);

  const spec: ModelSpec = { name, version, url, dir, serializedFile, handler, settings: settingsFromConfig(config) };
  if (config.inputs) spec.inputs = config.inputs.map(withDtype);
  if (config.outputs) spec.outputs = config.outputs.map(withDtype);
  const labelsFile = path.join(dir, 'index_to_name.json');
  if (await exists(labelsFile)) spec.labels = labelsFromIndexToName(await readJson(labelsFile, 'index_to_name.json'), 'index_to_name.json');
  return spec;
}

class FolderModelStore implements ModelStore {
  readonly root: string;
  private readonly cache: string;
  private readonly extracting = new Map<string, Promise<string>>();

  constructor(root: string) {
    this.root = path.resolve(root);
    const key = createHash('sha256').update(this.root).digest('hex').slice(0, 12);
    this.cache = path.join(os.tmpdir(), `torchd-store-${key}`);
  }

  /** Absolute path of `url` after symlinks, refusing anything outside the store (400). */
  private async locate(url: string): Promise<{ file: string; rel: string }> {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
      throw new BadRequestError(`Model URL ${url}: only files in the model store are supported (no downloads); copy the archive into ${this.root}`);
    }
    const root = await realpath(this.root).catch(() => {
      throw new BadRequestError(`Model store ${this.root} does not exist`);
    });
    const candidate = path.resolve(root, url);
    let file: string;
    try {
      file = await realpath(candidate);
    } catch {
      // Check containment first so a missing file outside the store is reported as outside, not missing.
      const rel = path.relative(root, candidate);
      if (rel.startsWith('..') || path.isAbsolute(rel)) throw new BadRequestError(`Model URL ${url} is outside the model store ${this.root}`);
      throw new BadRequestError(`Model archive ${url} not found in the model store ${this.root}`);
    }
    const rel = path.relative(root, file);
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
      throw new BadRequestError(`Model URL ${url} is outside the model store ${this.root}`);
    }
    return { file, rel };
  }

  async load(url: string, options: { modelName?: string } = {}): Promise<ModelSpec> {
    const { file, rel } = await this.locate(url);
    const info = await stat(file);
    const dir = info.isDirectory() ? file : await this.extract(file, rel, info.size, info.mtimeMs);
    return readModelDir(dir, rel, options.modelName);
  }

  /**
   * Extracts a .mar once per (path, size, mtime) into the cache; concurrent loads share one extraction and a
   * half-written folder is never visible (extract to a temp name, then rename).
   */
  private extract(file: string, rel: string, size: number, mtimeMs: number): Promise<string> {
    const key = createHash('sha256').update(`${file}\0${size}\0${mtimeMs}`).digest('hex').slice(0, 16);
    const dest = path.join(this.cache, `${path.basename(file).replace(/[^A-Za-z0-9_.-]/g, '_')}-${key}`);
    let pending = this.extracting.get(dest);
    if (!pending) {
      pending = (async () => {
        if (await exists(path.join(dest, MANIFEST))) return dest;
        const tmp = `${dest}.tmp-${randomUUID()}`;
        try {
          await extractZip(file, tmp, rel);
          await rename(tmp, dest).catch(async (err: NodeJS.ErrnoException) => {
            // Another process finished the same extraction first: use theirs.
            if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
            await rm(tmp, { recursive: true, force: true });
          });
          return dest;
        } catch (err) {
          await rm(tmp, { recursive: true, force: true });
          throw err;
        }
      })().finally(() => this.extracting.delete(dest));
      this.extracting.set(dest, pending);
    }
    return pending;
  }

  async list(): Promise<string[]> {
    const entries = await readdir(this.root, { withFileTypes: true }).catch(() => []);
    const found: string[] = [];
    for (const entry of entries) {
      if (entry.isFile() && entry.name.endsWith('.mar')) found.push(entry.name);
      else if (entry.isDirectory() && (await exists(path.join(this.root, entry.name, MANIFEST)))) found.push(entry.name);
    }
    return found.sort();
  }
}

/** A ModelStore over the folder `root` (the --model-store). Archives are extracted under os.tmpdir(). */
export function createModelStore(root: string): ModelStore {
  return new FolderModelStore(root);
}

const DTYPE_OF_DATATYPE: Record<string, DType | undefined> = {
  BOOL: 'bool', UINT8: 'uint8', INT8: 'int8', INT16: 'int16', INT32: 'int32', INT64: 'int64',
  FP16: 'float16', BF16: 'bfloat16', FP32: 'float32', FP64: 'float64', BYTES: undefined,
};

/** A declared tensor with its engine dtype (BYTES inputs are images/strings: no dtype). */
function withDtype(meta: TensorMetadata): TensorMetadata {
  const dtype = DTYPE_OF_DATATYPE[meta.datatype];
  return dtype ? { ...meta, dtype } : { ...meta };
}
