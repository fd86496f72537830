// Streaming zip reading (yauzl) for model archives and TorchScript files: entry listing and safe extraction.
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';
import { BadRequestError } from '../errors.js';

/** Zip central-directory names of `file`. Throws the raw yauzl error if `file` is not a zip. */
export async function listZipEntries(file: string): Promise<string[]> {
  // decodeStrings stays on so yauzl validates names; listing never writes, so no further checks are needed.
  const zip = await yauzl.openPromise(file, { lazyEntries: true, autoClose: true });
  return new Promise<string[]>((resolve, reject) => {
    const names: string[] = [];
    zip.on('entry', (entry: yauzl.Entry) => {
      names.push(entry.fileName);
      zip.readEntry();
    });
    zip.on('end', () => resolve(names));
    zip.on('error', reject);
    zip.readEntry();
  });
}

/** Refuses a name that is absolute or climbs out of the extraction folder (yauzl checks too; this is the belt). */
function safeTarget(dest: string, name: string, archive: string): string {
  const target = path.resolve(dest, name);
  const rel = path.relative(dest, target);
  if (path.isAbsolute(name) || /^[a-zA-Z]:/.test(name) || rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new BadRequestError(`Archive ${archive} has an entry that escapes the extraction folder: ${name}`);
  }
  return target;
}

/** Turns yauzl's name-validation errors into a 400 that names the archive and the entry. */
function zipError(err: unknown, archive: string): Error {
  const message = err instanceof Error ? err.message : String(err);
  const escape = /^(invalid relative path|absolute path): (.*)$/.exec(message);
  if (escape) return new BadRequestError(`Archive ${archive} has an entry that escapes the extraction folder: ${escape[2]}`);
  if (err instanceof BadRequestError) return err;
  return new BadRequestError(`Archive ${archive} is not a readable zip file: ${message}`);
}

/**
 * Extracts every entry of the zip `file` into `dest` (created), one entry at a time (streaming, bounded memory).
 * Throws BadRequestError for entries with `../` or absolute names and for corrupt archives.
 */
export async function extractZip(file: string, dest: string, archive = path.basename(file)): Promise<void> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.openPromise(file, { lazyEntries: true, autoClose: true });
  } catch (err) {
    throw zipError(err, archive);
  }
  await mkdir(dest, { recursive: true });
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      zip.close();
      reject(zipError(err, archive));
    };
    zip.on('error', fail);
    zip.on('end', () => {
      if (!failed) resolve();
    });
    zip.on('entry', (entry: yauzl.Entry) => {
      void (async () => {
        const target = safeTarget(dest, entry.fileName, archive);
        if (entry.fileName.endsWith('/')) {
          await mkdir(target, { recursive: true });
        } else {
          await mkdir(path.dirname(target), { recursive: true });
          const stream = await zip.openReadStreamPromise(entry);
          await pipeline(stream, createWriteStream(target));
        }
      })().then(() => {
        if (!failed) zip.readEntry();
      }, fail);
    });
    zip.readEntry();
  });
}
