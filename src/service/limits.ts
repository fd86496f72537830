// The service's bounds: their config keys, defaults and the 400 each gives. Codecs may check a count early (before
// materialising elements) with the same function, so the message is the same wherever the bound trips.
import { parseJsonBounded, parseJsonBoundedAsync } from '../bounded-json.js';
import { BadRequestError } from '../errors.js';
import type { ServiceLimits } from './types.js';

/** Defaults of the limit keys (config.properties names in the comments). */
export const DEFAULT_LIMITS: ServiceLimits = {
  maxRequestElements: 10_000, // max_request_elements
  maxJsonDepth: 64, // max_json_depth
  maxImagePixels: 40_000_000, // max_image_pixels
  maxIgSteps: 1024, // max_ig_steps
};

export const DEFAULT_IG_STEPS = 15;

/**
 * JSON bodies of at least this many bytes are parsed on a worker thread (ServiceLimits.offLoopJsonBytes): JSON.parse
 * runs at roughly 50–100 MB/s here, so 256 KiB stays within a few ms on the event loop, while the 6.5 MB that
 * max_request_size allows would hold it for 50–150 ms. Smaller bodies keep the synchronous path (a worker round
 * trip costs more than their parse).
 */
export const OFF_LOOP_JSON_BYTES = 256 * 1024;

/**
 * Tensors of at least this many values in a JSON response are encoded on the response encoder thread
 * (handlers/response-encoder.ts): materialising and printing a number costs ≈ 0.3 µs, so 16 384 stay near 5 ms on the
 * sliced synchronous path, while the largest output a 6.5 MB request can give (x·2 of 700 000 numbers, 13 MB of
 * JSON) held the event loop 10–45 ms there (bench/NOTES.md §31). Below it a thread round trip costs more than it saves.
 */
export const OFF_LOOP_JSON_NUMBERS = 16_384;

/**
 * A request's JSON (a body or a part) → its value, with the request bounds (max_json_depth, max_request_elements).
 * Bodies of offLoopJsonBytes or more are parsed off the event loop and their rectangular numeric arrays come back as
 * PackedArray (bounded-json.ts). Rejects with the same BadRequestError either way.
 */
export async function parseRequestJson(body: Buffer, limits: ServiceLimits, what: string): Promise<unknown> {
  const bounds = { maxDepth: limits.maxJsonDepth, maxElements: limits.maxRequestElements };
  if (body.length < (limits.offLoopJsonBytes ?? OFF_LOOP_JSON_BYTES)) return parseJsonBounded(body, bounds, what);
  return parseJsonBoundedAsync(body, bounds, what);
}

/** Throws 400 when a request carries more than `max_request_elements` elements (`what` says which). */
export function checkElementCount(count: number, what: string, maxRequestElements: number): void {
  if (count > maxRequestElements) {
    throw new BadRequestError(`Too many elements: the request has ${count} ${what}, more than max_request_elements (${maxRequestElements})`);
  }
}

/** `n_steps` as given → an integer in 1..max_ig_steps (default 15). Throws 400 naming the bound and its key. */
export function parseSteps(value: unknown, limits: ServiceLimits): number {
  if (value === undefined || value === null || value === '') return DEFAULT_IG_STEPS;
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > limits.maxIgSteps) {
    throw new BadRequestError(`n_steps must be an integer from 1 to ${limits.maxIgSteps} (max_ig_steps), got ${JSON.stringify(value)}`);
  }
  return n;
}

/** A target class index as given → a non-negative integer, or undefined when absent. Throws 400. */
export function parseTarget(value: unknown): number | undefined {
  if (value === undefined || value === '' || value === null) return undefined;
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value.trim()) : NaN;
  if (!Number.isInteger(n) || n < 0) throw new BadRequestError(`target must be a non-negative integer class index, got ${JSON.stringify(value)}`);
  return n;
}
