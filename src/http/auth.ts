// Optional bearer-token access control, as TorchServe's token authorization: one key for the inference
// listener, one for the management listener, written to a key file only the server's user can read.
import type { RequestHandler } from 'express';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { ServerConfig } from '../config-types.js';
import { InvalidKeyError } from '../errors.js';

export interface TokenKeys {
  inferenceKey: string;
  managementKey: string;
}

/** 24 random bytes, base64url: 32 characters, safe in headers and JSON. */
export function newKey(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * Generate fresh keys and write them to `config.keyFile` (mode 0600, replaced atomically) in TorchServe's
 * key_file.json layout: `{"management": {"key"}, "inference": {"key"}}`, plus `extra` entries (e.g. the
 * generated metrics key). Keys live as long as the process (torchd has no expiry or refresh API).
 * Throws if the file cannot be written.
 */
export async function setupTokenAuth(config: Pick<ServerConfig, 'keyFile'>, logger: Logger, extra: Record<string, string> = {}): Promise<TokenKeys> {
  const keys: TokenKeys = { inferenceKey: newKey(), managementKey: newKey() };
  const file = await writeKeyFile(config.keyFile, { management: keys.managementKey, inference: keys.inferenceKey, ...extra });
  logger.info({ keyFile: file }, 'token authorization enabled: keys written to the key file');
  return keys;
}

/** Writes `{name: {"key": value}}` entries to `keyFile`, readable only by this user; returns its absolute path. */
export async function writeKeyFile(keyFile: string, entries: Record<string, string>): Promise<string> {
  const file = resolve(keyFile);
  await mkdir(dirname(file), { recursive: true });
  const body = JSON.stringify(Object.fromEntries(Object.entries(entries).map(([k, v]) => [k, { key: v }])), null, 2) + '\n';
  // Write beside the target with 0600 from creation, then rename: the key is never readable by others,
  // not even for an instant, and a reader never sees half a file.
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, body, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
  return file;
}

/**
 * The 401 for an `Authorization` value (HTTP header or gRPC metadata) that is not `Bearer <key>`, or
 * undefined when it is. Shared by the HTTP middleware and the gRPC services so both say the same.
 */
export function tokenError(header: string | undefined, key: string): InvalidKeyError | undefined {
  const expected = Buffer.from(key, 'utf8');
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  const given = match ? Buffer.from(match[1], 'utf8') : Buffer.alloc(0);
  // Constant-time comparison so the key cannot be guessed byte by byte from response times.
  if (given.length === expected.length && timingSafeEqual(given, expected)) return undefined;
  return new InvalidKeyError(match ? 'Token Authorization failed: invalid key' : 'Token Authorization failed: missing "Authorization: Bearer <key>" header');
}

/** Rejects with 401 InvalidKeyException unless the request carries `Authorization: Bearer <key>`. */
export function requireToken(key: string): RequestHandler {
  return (req, res, next) => {
    const err = tokenError(req.get('authorization'), key);
    if (!err) {
      next();
      return;
    }
    res.setHeader('WWW-Authenticate', 'Bearer');
    next(err);
  };
}
