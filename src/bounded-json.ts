// JSON parsing with bounds checked by a linear scan before parsing: a 100 000-deep document never reaches code
// that recurses over it (a stack overflow would be a 500), and an array of a million small arrays or objects (a
// second of JSON.parse and hundreds of MB of objects) is refused before it is built. Large bodies are parsed on a
// worker thread (parseJsonBoundedAsync), with their numeric arrays packed so that bringing them back is cheap.
import os from 'node:os';
import { BadRequestError, InternalServerError, ServiceUnavailableError, TorchdError } from './errors.js';
import { startModuleWorker, WorkerPool } from './handlers/worker-pool.js';

export interface JsonBounds {
  /** Deepest array/object nesting (`max_json_depth`). */
  maxDepth: number;
  /** Most arrays, objects or strings one array may hold (`max_request_elements`); numbers are not counted. */
  maxElements?: number;
}

/**
 * Scans JSON text (strings skipped) and says which bound it passes, stopping as soon as one is passed. Linear in the
 * text; does not validate the JSON (JSON.parse does that next).
 */
export function jsonBoundExceeded(text: string, bounds: JsonBounds): 'depth' | 'elements' | undefined {
  const maxElements = bounds.maxElements ?? Infinity;
  // Per open container: -1 for an object, else the structured items seen so far in that array.
  const counts: number[] = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22 || c === 0x5b || c === 0x7b) {
      const top = counts.length - 1;
      if (top >= 0 && counts[top] >= 0 && ++counts[top] > maxElements) return 'elements';
      if (c === 0x22) inString = true;
      else {
        counts.push(c === 0x5b ? 0 : -1);
        if (counts.length > bounds.maxDepth) return 'depth';
      }
    } else if (c === 0x5d || c === 0x7d) counts.pop();
  }
  return undefined;
}

/**
 * Parses JSON text (or UTF-8 bytes). Throws BadRequestError naming the bound and its key for too deep a document
 * or too long an array of arrays/objects/strings, "Malformed <what>: <reason>" for invalid JSON.
 */
export function parseJsonBounded(input: string | Buffer, bounds: JsonBounds, what = 'JSON body'): unknown {
  const text = typeof input === 'string' ? input : input.toString('utf8');
  const exceeded = jsonBoundExceeded(text, bounds);
  if (exceeded === 'depth') {
    throw new BadRequestError(`${capitalize(what)} is nested deeper than ${bounds.maxDepth} levels (max_json_depth ${bounds.maxDepth})`);
  }
  if (exceeded === 'elements') {
    throw new BadRequestError(
      `Too many elements: an array in the ${what} holds more than ${bounds.maxElements} arrays, objects or strings (max_request_elements ${bounds.maxElements})`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`Malformed ${what}: ${(err as Error).message}`);
  }
}

/**
 * A rectangular array of numbers as parsed off the event loop: its values row-major as float64 (what JSON.parse
 * gives each number, Infinity for 1e999 included) and its shape. Stands where the nested array stood in the parsed
 * value; tensor consumers (handlers/tensors.ts jsonToTensor, the v2 codec, v1 instances) take it as they take the
 * nested array, with the same checks and messages.
 */
export class PackedArray {
  constructor(
    readonly data: Float64Array,
    readonly shape: readonly number[],
  ) {}

  /** Entries of the outermost dimension, as the nested array had them. */
  get length(): number {
    return this.shape[0];
  }

  /** The outermost entries: numbers for a 1-D array, else PackedArray views (no copy). */
  rows(): number[] | PackedArray[] {
    if (this.shape.length === 1) return Array.from(this.data);
    const inner = this.shape.slice(1);
    const per = inner.reduce((a, b) => a * b, 1);
    return Array.from({ length: this.shape[0] }, (_, i) => new PackedArray(this.data.subarray(i * per, (i + 1) * per), inner));
  }
}

/** A JSON value that a non-tensor field expects plain (a target list): a PackedArray becomes nested arrays again. */
export function plainJson(value: unknown): unknown {
  if (!(value instanceof PackedArray)) return value;
  return value.shape.length === 1 ? Array.from(value.data) : (value.rows() as PackedArray[]).map(plainJson);
}

/** Arrays with fewer numbers than this stay plain: packing them saves nothing and parameters (shapes, targets) are short. */
export const PACK_MIN_NUMBERS = 1024;

/** One packed array of a parsed value: where it sits (keys and indices from the root), its numbers and shape. */
export interface Pack {
  path: (string | number)[];
  data: Float64Array;
  shape: number[];
}

/**
 * Replaces, in a parsed JSON value, every outermost rectangular array of at least PACK_MIN_NUMBERS numbers by null
 * and returns it as a Pack (the worker sends the Float64Arrays by transfer: a structured clone of the nested arrays
 * would cost the main thread as much as JSON.parse). Ragged arrays (rows included), arrays holding anything but
 * numbers, and objects stay plain (objects' members are searched). Mutates `root`; returns the root to send and the
 * packs.
 */
export function packNumericArrays(root: unknown): { value: unknown; packs: Pack[] } {
  const packs: Pack[] = [];
  const path: (string | number)[] = [];
  const visit = (v: unknown): unknown => {
    if (Array.isArray(v)) {
      const packed = packRectangular(v);
      if (packed) {
        packs.push({ path: [...path], ...packed });
        return null;
      }
      // Only objects inside are searched: a row of a ragged array stays plain, so that the consumer's ragged-array
      // message (which names the row) is the same as for a small body.
      for (let i = 0; i < v.length; i++) {
        if (v[i] === null || typeof v[i] !== 'object' || Array.isArray(v[i])) continue;
        path.push(i);
        v[i] = visit(v[i]);
        path.pop();
      }
    } else if (v !== null && typeof v === 'object') {
      const obj = v as Record<string, unknown>;
      for (const key of Object.keys(obj)) {
        if (obj[key] === null || typeof obj[key] !== 'object') continue;
        path.push(key);
        obj[key] = visit(obj[key]);
        path.pop();
      }
    }
    return v;
  };
  return { value: visit(root), packs };
}

/** A rectangular all-number nested array's values and shape, or undefined (ragged, mixed, empty or short). */
function packRectangular(v: unknown[]): { data: Float64Array; shape: number[] } | undefined {
  const shape: number[] = [];
  let probe: unknown = v;
  while (Array.isArray(probe)) {
    if (probe.length === 0) return undefined;
    shape.push(probe.length);
    probe = probe[0];
  }
  if (typeof probe !== 'number') return undefined;
  const total = shape.reduce((a, b) => a * b, 1);
  if (total < PACK_MIN_NUMBERS) return undefined;
  const data = new Float64Array(total);
  let at = 0;
  const last = shape.length - 1;
  const fill = (a: unknown, dim: number): boolean => {
    if (!Array.isArray(a) || a.length !== shape[dim]) return false;
    if (dim === last) {
      for (let i = 0; i < a.length; i++) {
        const x = a[i];
        if (typeof x !== 'number') return false;
        data[at++] = x;
      }
      return true;
    }
    for (let i = 0; i < a.length; i++) if (!fill(a[i], dim + 1)) return false;
    return true;
  };
  return fill(v, 0) ? { data, shape } : undefined;
}

/** Puts each pack back where packNumericArrays took it from, as a PackedArray; returns the root. */
export function unpackInto(value: unknown, packs: Pack[]): unknown {
  let root = value;
  for (const { path, data, shape } of packs) {
    const packed = new PackedArray(data, shape);
    if (path.length === 0) {
      root = packed;
      continue;
    }
    let node = root as Record<string | number, unknown>;
    for (let i = 0; i < path.length - 1; i++) node = node[path[i]] as Record<string | number, unknown>;
    node[path[path.length - 1]] = packed;
  }
  return root;
}

/** What the JSON worker (json-worker.ts) is asked: the bytes (transferred), the bounds, and the name for messages. */
export interface JsonParseRequest {
  bytes: Uint8Array;
  bounds: JsonBounds;
  what: string;
}

// The worker module sits next to this one: json-worker.ts under tsx (tests), json-worker.js in dist/.
const WORKER_URL = new URL(`./json-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
let pool: WorkerPool | undefined;

function jsonPool(): WorkerPool {
  return (pool ??= new WorkerPool({
    size: Math.max(1, os.availableParallelism()),
    start: () => startModuleWorker(WORKER_URL),
    crashError: (reason, started) => (started
      ? new BadRequestError(`Parsing the JSON failed: the worker thread parsing it stopped (${reason})`)
      : new InternalServerError(`JSON parsing is unavailable: the JSON worker thread could not start (${reason})`)),
    closedError: () => new ServiceUnavailableError('torchd is shutting down'),
    // The worker's 400s (bounds, malformed JSON) come back as the same BadRequestError the synchronous path throws.
    replyError: (e) => (e.status === 400 ? new BadRequestError(e.message) : new TorchdError(e.status, e.type, e.message)),
  }));
}

/**
 * parseJsonBounded on a worker thread, for large bodies: the bound scan and JSON.parse of a 5 MB numeric array take
 * 50–150 ms, which would stall every other request on the event loop. Same results and messages as
 * parseJsonBounded, except that rectangular numeric arrays of PACK_MIN_NUMBERS or more come back as PackedArray.
 * Throws BadRequestError as parseJsonBounded does.
 */
export async function parseJsonBoundedAsync(input: Buffer, bounds: JsonBounds, what = 'JSON body'): Promise<unknown> {
  // A copy that can be transferred: the body may share its ArrayBuffer with other data.
  const bytes = new Uint8Array(input.length);
  bytes.set(input);
  const reply = await jsonPool().run<{ value: unknown; packs: Pack[] }>({ bytes, bounds, what } satisfies JsonParseRequest, [bytes.buffer]);
  return unpackInto(reply.value, reply.packs);
}

/** Terminates the JSON worker threads (server shutdown); a later parse starts them again. */
export async function closeJsonWorkers(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.close();
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
