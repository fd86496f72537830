// Reads TorchServe's `config.properties`, `TS_<KEY>` environment variables and CLI flags into the settled
// ServerConfig (precedence CLI > environment > file > default, as TorchServe's enable_envvars_config).
// Users bring their existing files: keys torchd does not use are accepted and reported as ignored;
// keys it does use are validated with zod, wherever they came from, and a bad one is named with its value.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import type { ServerConfig } from './config-types.js';

/** A setting that failed validation; the message names the key (or flag) and the value. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Parses Java `.properties` text: `key=value`, `key: value` or `key value`; `#`/`!` comments;
 * a trailing `\` continues the line; `\t \n \r \f \uXXXX` escapes. Later keys win, as in Java.
 */
export function parseProperties(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i].replace(/^[ \t\f]+/, '');
    if (line === '' || line.startsWith('#') || line.startsWith('!')) continue;
    // An odd number of trailing backslashes continues the logical line.
    while (/(^|[^\\])(\\\\)*\\$/.test(line) && i + 1 < lines.length) {
      line = line.slice(0, -1) + lines[++i].replace(/^[ \t\f]+/, '');
    }
    const sep = /^((?:\\.|[^=:\s\\])*)[ \t\f]*[=:]?[ \t\f]*/.exec(line);
    const rawKey = sep ? sep[1] : line;
    const rawValue = sep ? line.slice(sep[0].length) : '';
    out.set(unescapeProperty(rawKey), unescapeProperty(rawValue));
  }
  return out;
}

function unescapeProperty(s: string): string {
  return s.replace(/\\(u[0-9a-fA-F]{4}|.)/g, (_m, c: string) => {
    if (c.length === 5) return String.fromCharCode(parseInt(c.slice(1), 16));
    return ({ t: '\t', n: '\n', r: '\r', f: '\f' } as Record<string, string>)[c] ?? c;
  });
}

/** CLI flags; each overrides the matching config.properties key. */
export interface ConfigFlags {
  modelStore?: string;
  /** --models: NAME=FILE[,NAME2=FILE2] or `all` */
  models?: string;
  inferenceAddress?: string;
  managementAddress?: string;
  metricsAddress?: string;
  enableTokenAuth?: boolean;
}

const DEFAULTS = {
  inference_address: 'http://127.0.0.1:8080',
  management_address: 'http://127.0.0.1:8081',
  metrics_address: 'http://127.0.0.1:8082',
  max_request_size: '6553500',
  default_response_timeout: '120',
  default_workers_per_model: '1',
  job_queue_size: '100',
  // TorchServe allows any file or http(s) URL by default; torchd registers only what is inside the model
  // store unless allowed_urls says otherwise (a body must never make torchd read outside it).
  allowed_urls: '',
  enable_token_auth: 'false',
  intra_op_threads: '0',
  // After a short call, a worker thread polls for the next one this long before it sleeps, and the event loop
  // polls through the next call to that model (bench/NOTES.md §41, §44).
  worker_spin_us: '2000',
  // V8 grows its heap limit by (1 + this/100) after a full GC (0: V8's own dynamic factor); see src/v8-heap.ts.
  heap_growing_percent: '300',
  drain_delay: '0',
  shutdown_timeout: '30',
  enable_grpc: 'true',
  grpc_inference_address: '127.0.0.1:7070',
  grpc_management_address: '127.0.0.1:7071',
  // Request bounds, checked once by the inference service for every protocol (src/service/limits.ts).
  max_request_elements: '10000',
  max_json_depth: '64',
  max_image_pixels: '40000000',
  max_ig_steps: '1024',
  max_workers_per_model: '64',
  // Extra memory one explanation may hold (bytes); IG runs its steps in passes sized to stay under it.
  ig_memory_budget: '536870912',
} as const;

const address = z.string().transform((s, ctx) => {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'expected a URL like http://127.0.0.1:8080' });
    return z.NEVER;
  }
  if (url.protocol !== 'http:') {
    ctx.addIssue({ code: 'custom', message: 'only http:// is served (terminate TLS in a proxy in front of torchd)' });
    return z.NEVER;
  }
  if (url.pathname !== '/' || url.search || url.hash) {
    ctx.addIssue({ code: 'custom', message: 'expected scheme, host and port only, e.g. http://127.0.0.1:8080' });
    return z.NEVER;
  }
  return `http://${url.hostname}:${url.port || 80}`;
});
const integer = (min: number, unit: string) =>
  z
    .string()
    .regex(/^\s*\d+\s*$/, `expected a whole number of ${unit} >= ${min}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `expected a whole number of ${unit} >= ${min}`));
/** A whole number in [min, max]: the two messages say which bound a value broke. */
const integerUpTo = (min: number, max: number, unit: string) =>
  integer(min, unit).pipe(z.number().max(max, `expected a whole number of ${unit} from ${min} to ${max}`));
const seconds = (min: number) =>
  z
    .string()
    .regex(/^\s*\d+(\.\d+)?\s*$/, `expected a number of seconds >= ${min}`)
    .transform(Number)
    .pipe(z.number().min(min, `expected a number of seconds >= ${min}`));
const bool = z
  .string()
  .regex(/^\s*(true|false)\s*$/i, 'expected true or false')
  .transform((s) => s.trim().toLowerCase() === 'true');
const list = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== ''),
);
const regexList = list.pipe(
  z.array(
    z.string().refine((r) => {
      try {
        new RegExp(r);
        return true;
      } catch {
        return false;
      }
    }, 'expected comma-separated regular expressions'),
  ),
);

// Per-version settings of the `models` key (TorchServe's names; marName/defaultVersion are its extras).
const versionShape = {
  batchSize: z.number().int().min(1),
  maxBatchDelay: z.number().min(0),
  minWorkers: z.number().int().min(0),
  maxWorkers: z.number().int().min(1),
  responseTimeout: z.number().positive(),
  device: z.string().regex(/^(cpu|cuda(:\d+)?)$/, 'expected cpu, cuda or cuda:N'),
  precision: z.enum(['fp32', 'fp16', 'bf16']),
  jobQueueSize: z.number().int().min(1),
  optimize: z.boolean(),
  igMemoryBudget: z.number().int().min(1),
  marName: z.string(),
  defaultVersion: z.boolean(),
};
const versionSettings = z.object(versionShape).partial().strict();
type VersionSettings = z.infer<typeof versionSettings>;
const json = z.string().transform((s, ctx) => {
  try {
    return JSON.parse(s) as unknown;
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: `expected JSON: ${(e as Error).message}` });
    return z.NEVER;
  }
});
const modelsJson = json.pipe(z.record(z.string(), z.record(z.string(), versionSettings)));
// TorchServe's snapshot (what KServe's torchserve samples carry): {"name", "modelCount", "models": {name:
// {version: settings}}}. Snapshots written by newer TorchServe releases carry per-version keys torchd has
// no use for (e.g. startupTimeout), so unknown keys there are reported as ignored instead of refused; the
// keys torchd does use are validated as strictly as in `models`.
const modelSnapshotJson = json.pipe(
  z.looseObject({
    models: z.record(z.string(), z.record(z.string(), z.looseObject(versionSettings.shape).refine((v) => typeof v.marName === 'string', 'expected marName (the archive in the model store)'))),
  }),
);
/** Environment variables KServe's torchserve runtime sets; accepted and logged, they change nothing here. */
const INFORMATIONAL_ENV = ['PROTOCOL_VERSION', 'TS_SERVICE_ENVELOPE'] as const;

/**
 * A gRPC listen address: `host:port`, `[v6]:port`, `http://host:port`, or a bare host (TorchServe's
 * grpc_*_address holds only the host; its port comes from grpc_*_port). Settled as `host:port`, port
 * null when the value named none.
 */
const grpcAddress = z.string().transform((s, ctx) => {
  const text = s.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'expected host:port, e.g. 127.0.0.1:7070' });
    return z.NEVER;
  }
  if (url.protocol !== 'http:' || url.pathname !== '/' || url.search || url.hash || url.username) {
    ctx.addIssue({ code: 'custom', message: 'expected host:port, e.g. 127.0.0.1:7070 (plaintext gRPC; terminate TLS in a proxy)' });
    return z.NEVER;
  }
  // new URL drops an explicit default port (":80"), so read whether one was given from the text itself.
  const explicitPort = /:(\d+)\/?$/.exec(text)?.[1];
  return { host: url.hostname, port: explicitPort === undefined ? null : Number(explicitPort) };
});
const port = integer(0, 'port number').pipe(z.number().max(65535, 'expected a port number from 0 to 65535'));

/** The config.properties keys torchd reads, with their validators. */
const USED_KEYS = {
  inference_address: address,
  management_address: address,
  metrics_address: address,
  model_store: z.string().min(1, 'expected a folder'),
  load_models: list,
  max_request_size: integer(1, 'bytes'),
  default_response_timeout: integer(1, 'seconds'),
  default_workers_per_model: integer(1, 'workers'),
  job_queue_size: integer(1, 'requests'),
  models: modelsJson,
  allowed_urls: regexList,
  enable_token_auth: bool,
  // TorchServe ≥0.12 spells the switch the other way round; honour both.
  disable_token_authorization: bool,
  key_file: z.string().min(1),
  intra_op_threads: integer(0, 'threads'),
  worker_spin_us: integerUpTo(0, 1000000, 'microseconds'),
  heap_growing_percent: integerUpTo(0, 1000, 'percent'),
  model_snapshot: modelSnapshotJson,
  // torchd reads TS_<KEY> unless the file turns this off explicitly (TorchServe: off unless true).
  enable_envvars_config: bool,
  // Bearer token on GET /metrics; the token is metrics_auth_token, else one generated into key_file.
  enable_metrics_auth: bool,
  metrics_auth_token: z.string().regex(/^[\x21-\x7e]{16,}$/, 'expected at least 16 printable characters without spaces'),
  // Only Prometheus text is served; the key is accepted so TorchServe/KServe files need no edit.
  metrics_format: z.enum(['prometheus'], "only 'prometheus' is served"),
  // TorchServe's global envelope switch: torchd serves every envelope on its own route (informational).
  service_envelope: z.string(),
  // Shutdown (README "Running"): serve on for drain_delay after readiness goes false, and give up
  // waiting shutdown_timeout after the signal (drain_delay included).
  drain_delay: seconds(0),
  shutdown_timeout: seconds(0.1),
  enable_grpc: bool,
  grpc_inference_address: grpcAddress,
  grpc_inference_port: port,
  grpc_management_address: grpcAddress,
  grpc_management_port: port,
  grpc_max_request_size: integer(1, 'bytes'),
  // 0: no limit on what the server sends (an explanation can be far larger than its request).
  grpc_max_response_size: integer(0, 'bytes'),
  grpc_keepalive_time_ms: integer(0, 'ms'),
  grpc_keepalive_timeout_ms: integer(0, 'ms'),
  grpc_max_connection_age_ms: integer(0, 'ms'),
  grpc_max_connection_age_grace_ms: integer(0, 'ms'),
  grpc_max_connection_idle_ms: integer(0, 'ms'),
  max_request_elements: integer(1, 'elements'),
  max_json_depth: integer(1, 'levels'),
  max_image_pixels: integer(1, 'pixels'),
  max_ig_steps: integer(1, 'steps'),
  max_workers_per_model: integer(1, 'workers'),
  ig_memory_budget: integer(1, 'bytes'),
} as const;
type UsedKey = keyof typeof USED_KEYS;

/** The environment variable that sets a key: TorchServe's `TS_` + the key in capitals. */
export function envName(key: string): string {
  return `TS_${key.toUpperCase()}`;
}

const FLAG_KEYS: Record<keyof ConfigFlags, { key: UsedKey; flag: string }> = {
  modelStore: { key: 'model_store', flag: '--model-store' },
  models: { key: 'load_models', flag: '--models' },
  inferenceAddress: { key: 'inference_address', flag: '--inference-address' },
  managementAddress: { key: 'management_address', flag: '--management-address' },
  metricsAddress: { key: 'metrics_address', flag: '--metrics-address' },
  enableTokenAuth: { key: 'enable_token_auth', flag: '--enable-token-auth' },
};

export interface ResolveOptions {
  /** config.properties contents (already parsed), if a file was given */
  properties?: Map<string, string>;
  /** label used in messages, e.g. the file path */
  source?: string;
  flags?: ConfigFlags;
  /** relative model_store / key_file resolve against this (default process.cwd()) */
  cwd?: string;
  /** environment to read `TS_<KEY>` (and PROTOCOL_VERSION) from; none when omitted */
  env?: Record<string, string | undefined>;
}

/** Validates properties + environment + flags into a ServerConfig; throws ConfigError naming every bad key. */
export function resolveConfig(options: ResolveOptions = {}): ServerConfig {
  const source = options.source ?? 'config.properties';
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? {};
  const raw = new Map<string, { value: string; origin: string }>();
  for (const [k, v] of Object.entries(DEFAULTS)) raw.set(k, { value: v, origin: 'default' });
  const ignoredKeys: string[] = [];
  for (const [k, v] of options.properties ?? []) {
    if (k in USED_KEYS) raw.set(k, { value: v, origin: `${source}: ${k}` });
    else ignoredKeys.push(k);
  }
  // Only an explicit `enable_envvars_config=false` in the file turns the environment off: containers are
  // configured through it, and KServe's own sample files set it to true.
  const envEnabled = options.properties?.get('enable_envvars_config')?.trim().toLowerCase() !== 'false';
  const informational: Record<string, string> = {};
  for (const name of INFORMATIONAL_ENV) if (env[name] !== undefined) informational[name] = env[name]!;
  const ignoredEnv: string[] = [];
  if (envEnabled) {
    const byEnvName = new Map(Object.keys(USED_KEYS).map((k) => [envName(k), k]));
    for (const name of Object.keys(env).sort()) {
      if (!name.startsWith('TS_') || env[name] === undefined) continue;
      const key = byEnvName.get(name);
      if (key === 'enable_envvars_config') continue; // the switch is the file's to set
      if (key) raw.set(key, { value: env[name]!, origin: name });
      else ignoredEnv.push(name);
    }
  }
  for (const [name, { key, flag }] of Object.entries(FLAG_KEYS)) {
    const v = options.flags?.[name as keyof ConfigFlags];
    if (v === undefined) continue;
    raw.set(key, { value: String(v), origin: flag });
  }

  const settled: Partial<Record<UsedKey, unknown>> = {};
  const problems: string[] = [];
  for (const [key, { value, origin }] of raw) {
    const result = USED_KEYS[key as UsedKey].safeParse(value);
    if (result.success) settled[key as UsedKey] = result.data;
    else {
      const issue = result.error.issues[0];
      const where = issue.path.length ? ` at ${issue.path.join('.')}` : '';
      const shown = key === 'metrics_auth_token' ? '<redacted>' : value.length > 200 ? `${value.slice(0, 200)}…` : value;
      problems.push(`${origin === 'default' ? key : origin}=${JSON.stringify(shown)} is invalid${where}: ${issue.message}`);
    }
  }
  if (problems.length) throw new ConfigError(`Invalid configuration:\n  ${problems.join('\n  ')}`);
  if (settled.model_store === undefined) {
    throw new ConfigError('No model store: pass --model-store DIR, set TS_MODEL_STORE or set model_store in config.properties');
  }
  if (settled.service_envelope !== undefined) informational.service_envelope = settled.service_envelope as string;

  const drainDelay = settled.drain_delay as number;
  const shutdownTimeout = settled.shutdown_timeout as number;
  if (drainDelay >= shutdownTimeout) {
    throw new ConfigError(
      `Invalid configuration:\n  drain_delay=${drainDelay} must be shorter than shutdown_timeout=${shutdownTimeout}: the timeout counts from the signal, drain delay included`,
    );
  }

  // model_snapshot: its settings are the base for each version; the `models` key overrides them per field.
  // Its models are loaded at start unless load_models / --models name the models explicitly.
  const models: ServerConfig['models'] = {};
  const loadModels = [...((settled.load_models as string[] | undefined) ?? [])];
  const snapshot = settled.model_snapshot as { models: Record<string, Record<string, Record<string, unknown>>> } | undefined;
  const fromSnapshot = loadModels.length === 0;
  for (const [name, versions] of Object.entries(snapshot?.models ?? {})) {
    models[name] = {};
    for (const [version, all] of Object.entries(versions)) {
      const known: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(all)) {
        if (k in versionShape) known[k] = v;
        else ignoredKeys.push(`model_snapshot.models.${name}.${version}.${k}`);
      }
      models[name][version] = known as VersionSettings;
      if (fromSnapshot) loadModels.push(`${name}=${known.marName as string}`);
    }
  }
  for (const [name, versions] of Object.entries((settled.models ?? {}) as z.infer<typeof modelsJson>)) {
    models[name] ??= {};
    for (const [version, s] of Object.entries(versions)) models[name][version] = { ...models[name][version], ...s };
  }
  const tokenAuth = settled.disable_token_authorization === true ? false : (settled.enable_token_auth as boolean);
  return {
    inferenceAddress: settled.inference_address as string,
    managementAddress: settled.management_address as string,
    metricsAddress: settled.metrics_address as string,
    modelStore: resolve(cwd, settled.model_store as string),
    loadModels,
    maxRequestSize: settled.max_request_size as number,
    defaultResponseTimeout: settled.default_response_timeout as number,
    defaultWorkersPerModel: settled.default_workers_per_model as number,
    jobQueueSize: settled.job_queue_size as number,
    models,
    allowedUrls: settled.allowed_urls as string[],
    enableTokenAuth: tokenAuth,
    keyFile: resolve(cwd, (settled.key_file as string | undefined) ?? join(cwd, 'key_file.json')),
    intraOpThreads: settled.intra_op_threads as number,
    workerSpinUs: settled.worker_spin_us as number,
    heapGrowingPercent: settled.heap_growing_percent as number,
    drainDelay,
    shutdownTimeout,
    limits: {
      maxRequestElements: settled.max_request_elements as number,
      maxJsonDepth: settled.max_json_depth as number,
      maxImagePixels: settled.max_image_pixels as number,
      maxIgSteps: settled.max_ig_steps as number,
    },
    maxWorkersPerModel: settled.max_workers_per_model as number,
    igMemoryBudget: settled.ig_memory_budget as number,
    enableMetricsAuth: (settled.enable_metrics_auth as boolean | undefined) ?? false,
    metricsAuthToken: settled.metrics_auth_token as string | undefined,
    grpc: grpcConfig(settled),
    ignoredKeys: [...ignoredKeys, ...ignoredEnv],
    informational,
  };
}

type GrpcAddress = { host: string; port: number | null };

function grpcConfig(settled: Partial<Record<UsedKey, unknown>>): ServerConfig['grpc'] {
  // grpc_*_port wins over a port inside grpc_*_address, as TorchServe reads them; neither → the default port.
  const hostPort = (address: GrpcAddress, port: unknown, fallback: number) => {
    const p = (port as number | undefined) ?? address.port ?? fallback;
    return `${address.host.includes(':') && !address.host.startsWith('[') ? `[${address.host}]` : address.host}:${p}`;
  };
  const ms = (key: UsedKey) => (settled[key] as number | undefined) ?? 0;
  return {
    enabled: settled.enable_grpc as boolean,
    inferenceAddress: hostPort(settled.grpc_inference_address as GrpcAddress, settled.grpc_inference_port, 7070),
    managementAddress: hostPort(settled.grpc_management_address as GrpcAddress, settled.grpc_management_port, 7071),
    maxRequestSize: (settled.grpc_max_request_size as number | undefined) ?? (settled.max_request_size as number),
    maxResponseSize: (settled.grpc_max_response_size as number | undefined) || -1,
    keepaliveTimeMs: ms('grpc_keepalive_time_ms'),
    keepaliveTimeoutMs: ms('grpc_keepalive_timeout_ms'),
    maxConnectionAgeMs: ms('grpc_max_connection_age_ms'),
    maxConnectionAgeGraceMs: ms('grpc_max_connection_age_grace_ms'),
    maxConnectionIdleMs: ms('grpc_max_connection_idle_ms'),
  };
}

/** The settled configuration as it may be logged: secrets replaced by "<redacted>". */
export function loggableConfig(config: ServerConfig): Record<string, unknown> {
  const { ignoredKeys: _i, informational: _n, ...rest } = config;
  return { ...rest, metricsAuthToken: config.metricsAuthToken === undefined ? undefined : '<redacted>' };
}

/** Reads `--ts-config FILE` (if any), merges `TS_<KEY>` from `env` and the flags. */
export async function loadConfig(
  tsConfig: string | undefined,
  flags: ConfigFlags,
  cwd = process.cwd(),
  env: Record<string, string | undefined> = {},
): Promise<ServerConfig> {
  let properties: Map<string, string> | undefined;
  if (tsConfig) {
    let text: string;
    try {
      text = await readFile(resolve(cwd, tsConfig), 'utf8');
    } catch (e) {
      throw new ConfigError(`Cannot read --ts-config ${tsConfig}: ${(e as Error).message}`);
    }
    properties = parseProperties(text);
  }
  return resolveConfig({ properties, source: tsConfig, flags, cwd, env });
}

/** "http://host:port" → what net.Server.listen takes. */
export function listenTarget(addressUrl: string): { host: string; port: number } {
  const url = new URL(addressUrl);
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 0) };
}

/** Whether a listen address only accepts local connections. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
