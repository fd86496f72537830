// `torchd archive`: packs a TorchScript file (plus labels and a model config) into a TorchServe-format
// .mar, after proving the file loads in the same engine that will serve it.
import { basename } from 'node:path';
import { BadRequestError, TorchdError } from '../errors.js';
import { checkName } from '../store/names.js';
import { HANDLER_ALIASES } from '../handlers/names.js';
import { loadModel } from '../native.js';
import { assertTorchScript, writeMar } from '../store/index.js';

export interface ArchiveOptions {
  modelName: string;
  version: string;
  /** The TorchScript file (torch.jit.save output). */
  serializedFile: string;
  /** A built-in handler name: image_classifier or tensor. */
  handler: string;
  /** More files for the archive root, e.g. index_to_name.json. */
  extraFiles?: string[];
  /** A model-config.yaml/.json stored at the archive root and named in the MANIFEST. */
  config?: string;
  /** Folder the archive is written to as `<modelName>.mar`. */
  exportPath: string;
  /** Overwrite an existing archive. */
  force?: boolean;
}

const BUILT_IN_HANDLERS = Object.keys(HANDLER_ALIASES);

/**
 * Checks that `serializedFile` is TorchScript (structure first, then a real load with LibTorch on the CPU)
 * and writes the archive. Returns the archive's path. Throws BadRequestError for a bad name/version,
 * a non-TorchScript or unloadable file, a missing input file; ConflictError when the archive exists
 * and `force` is unset.
 */
export async function runArchive(opts: ArchiveOptions): Promise<string> {
  // The name becomes a file name under exportPath: '/' or '..' would write elsewhere.
  checkName(opts.modelName, 'model name');
  checkName(opts.version, 'model version');
  if (!BUILT_IN_HANDLERS.includes(opts.handler)) {
    throw new BadRequestError(`Unknown handler "${opts.handler}": use one of ${BUILT_IN_HANDLERS.join(', ')}`);
  }
  const shown = basename(opts.serializedFile);
  await assertTorchScript(opts.serializedFile, shown);
  let model;
  try {
    model = await loadModel(opts.serializedFile, { device: 'cpu', workers: 1, threads: 1 });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new BadRequestError(
      `serializedFile ${shown} could not be loaded as TorchScript by LibTorch: ${reason}. ` +
        'Export it with torch.jit.script(model).save("model.pt") (or torch.jit.trace) and archive that file',
    );
  }
  await model.dispose();
  try {
    return await writeMar({
      modelName: opts.modelName,
      version: opts.version,
      serializedFile: opts.serializedFile,
      handler: opts.handler,
      extraFiles: opts.extraFiles,
      configFile: opts.config,
      exportPath: opts.exportPath,
      force: opts.force,
    });
  } catch (err) {
    if (err instanceof TorchdError) throw err;
    throw new BadRequestError(`Cannot write the archive to ${opts.exportPath}: ${(err as Error).message}`);
  }
}
