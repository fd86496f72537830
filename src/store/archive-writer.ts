// Writes TorchServe-format .mar archives (zip + MAR-INF/MANIFEST.json) with yazl: `torchd archive`, tests, demo.
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import yazl from 'yazl';
import { BadRequestError, ConflictError } from '../errors.js';

export const ARCHIVER_VERSION = 'torchd-0.1.0';

export interface WriteMarOptions {
  modelName: string;
  version: string;
  /** Path of the TorchScript file; stored at the archive root under its base name. */
  serializedFile: string;
  /** Built-in handler name (image_classifier, tensor) as written into the MANIFEST. */
  handler: string;
  /** More files for the archive root (index_to_name.json, ...). */
  extraFiles?: string[];
  /** A model config file, stored at the root and named by model.configFile. */
  configFile?: string;
  /** Folder the archive goes to, as `<modelName>.mar`. */
  exportPath: string;
  /** Overwrite an existing archive (otherwise ConflictError). */
  force?: boolean;
}

/**
 * Builds `<exportPath>/<modelName>.mar` and returns its path. Throws BadRequestError for a missing input
 * file or two files with the same base name, ConflictError when the archive exists and `force` is unset.
 */
export async function writeMar(options: WriteMarOptions): Promise<string> {
  const target = path.join(options.exportPath, `${options.modelName}.mar`);
  if (!options.force && (await stat(target).then(() => true, () => false))) {
    throw new ConflictError(`${target} already exists; use force to overwrite`);
  }
  const files = [options.serializedFile, ...(options.extraFiles ?? []), ...(options.configFile ? [options.configFile] : [])];
  const names = new Set<string>();
  for (const file of files) {
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) throw new BadRequestError(`File to archive not found: ${file}`);
    const base = path.basename(file);
    if (names.has(base)) throw new BadRequestError(`Two files to archive share the name ${base}`);
    names.add(base);
  }
  const manifest = {
    createdOn: new Date().toISOString(),
    runtime: 'python',
    model: {
      modelName: options.modelName,
      modelVersion: options.version,
      serializedFile: path.basename(options.serializedFile),
      handler: options.handler,
      ...(options.configFile ? { configFile: path.basename(options.configFile) } : {}),
    },
    archiverVersion: ARCHIVER_VERSION,
  };
  const zip = new yazl.ZipFile();
  zip.addBuffer(Buffer.from(JSON.stringify(manifest, null, 2)), 'MAR-INF/MANIFEST.json');
  for (const file of files) zip.addFile(file, path.basename(file));
  zip.end();
  await mkdir(options.exportPath, { recursive: true });
  // Write beside the target and rename, so a reader never sees half an archive.
  const tmp = `${target}.tmp-${process.pid}`;
  try {
    await pipeline(zip.outputStream, createWriteStream(tmp));
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return target;
}
