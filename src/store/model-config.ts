// Model config (`model-config.yaml` / `.json`) and MANIFEST validation, handler presets and resolution.
import { z } from 'zod';
import { BadRequestError } from '../errors.js';
import type { HandlerConfig, ModelSettings } from '../engine/types.js';
import { HANDLER_ALIASES, HANDLER_TRAITS, type HandlerName, type Preset } from '../handlers/names.js';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

/** Handler defaults per preset; explicit `handler:` keys override them. */
export const PRESETS: Record<'imagenet' | 'mnist', Omit<HandlerConfig, 'name' | 'preset'>> = {
  imagenet: { image_size: 256, crop_size: 224, channels: 3, mean: IMAGENET_MEAN, std: IMAGENET_STD, topk: 5, output: 'topk' },
  mnist: { image_size: null, crop_size: null, channels: 1, mean: [0.1307], std: [0.3081], topk: 5, output: 'argmax' },
};

const positiveInt = z.number().int().positive();

/** The `handler:` block: exactly the spec's keys. */
export const handlerBlockSchema = z.strictObject({
  name: z.string().optional(),
  preset: z.enum(['imagenet', 'mnist']).optional(),
  image_size: positiveInt.nullable().optional(),
  crop_size: positiveInt.nullable().optional(),
  channels: z.union([z.literal(1), z.literal(3)]).optional(),
  mean: z.array(z.number()).min(1).optional(),
  std: z.array(z.number().positive()).min(1).optional(),
  topk: positiveInt.optional(),
  output: z.enum(['topk', 'argmax', 'probabilities', 'logits']).optional(),
  fast_decode: z.boolean().optional(),
});
export type HandlerBlock = z.infer<typeof handlerBlockSchema>;

/**
 * Top-level keys of TorchServe's model-config.yaml that torchd accepts without using (users bring their files);
 * anything else is refused so a typo does not go unnoticed.
 */
const TORCHSERVE_IGNORED_KEYS = [
  'deviceType', 'deviceIds', 'parallelType', 'parallelLevel', 'parallelism', 'torchrun', 'pt2', 'startupTimeout',
  'maxRetryTimeoutInSec', 'clientTimeoutInMills', 'useJobTicket', 'continuousBatching', 'asyncCommunication',
  'maxSequenceJobQueueSize', 'sequenceMaxIdleMSec', 'maxNumSequence', 'sequenceTimeoutMSec', 'retryCount',
] as const;

const V2_DATATYPES = ['BOOL', 'UINT8', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'BF16', 'FP32', 'FP64', 'BYTES'] as const;

/** A declared input/output (KServe v2 metadata; a declared input shape also lets the engine warm up at load). */
const tensorDeclarationSchema = z.strictObject({
  name: z.string().min(1),
  datatype: z.enum(V2_DATATYPES),
  shape: z.array(z.number().int().min(-1)),
});

export const modelConfigSchema = z.strictObject({
  batchSize: positiveInt.optional(),
  maxBatchDelay: z.number().nonnegative().optional(),
  minWorkers: z.number().int().nonnegative().optional(),
  maxWorkers: positiveInt.optional(),
  responseTimeout: z.number().positive().optional(),
  jobQueueSize: positiveInt.optional(),
  device: z.string().regex(/^(cpu|cuda(:\d+)?)$/, 'expected cpu, cuda or cuda:N').optional(),
  precision: z.enum(['fp32', 'fp16', 'bf16']).optional(),
  optimize: z.boolean().optional(),
  // NaN/±Infinity in tensor inputs: refused (400 naming the input) unless the model says it takes them.
  allowNonFinite: z.boolean().optional(),
  // Bytes one explanation may hold beyond its inputs (server default: ig_memory_budget).
  igMemoryBudget: positiveInt.optional(),
  handler: handlerBlockSchema.optional(),
  inputs: z.array(tensorDeclarationSchema).optional(),
  outputs: z.array(tensorDeclarationSchema).optional(),
  ...Object.fromEntries(TORCHSERVE_IGNORED_KEYS.map((k) => [k, z.unknown().optional()])),
});
export type ModelConfig = z.infer<typeof modelConfigSchema>;

export const manifestSchema = z.object({
  runtime: z.string().optional(),
  archiverVersion: z.string().optional(),
  model: z.object({
    modelName: z.string().optional(),
    modelVersion: z.union([z.string(), z.number()]).optional(),
    serializedFile: z.string().optional(),
    handler: z.string().optional(),
    configFile: z.string().optional(),
    modelFile: z.string().optional(),
  }),
});
export type Manifest = z.infer<typeof manifestSchema>;

/** Formats the first zod issue as `file: key.path: problem`, naming unknown keys. */
export function describeIssue(file: string, error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue.path.length ? issue.path.join('.') : '(top level)';
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `"${k}"`).join(', ');
    const inHandler = issue.path[0] === 'handler';
    const allowed = inHandler ? Object.keys(handlerBlockSchema.shape).join(', ') : 'batchSize, maxBatchDelay, minWorkers, maxWorkers, responseTimeout, jobQueueSize, device, precision, optimize, allowNonFinite, igMemoryBudget, handler, inputs, outputs';
    return `${file}: unknown key ${keys} in ${inHandler ? 'handler' : 'the top level'} (allowed: ${allowed})`;
  }
  return `${file}: ${where}: ${issue.message}`;
}

/** Validates a parsed model config. Throws BadRequestError naming the file and the offending key. */
export function parseModelConfig(file: string, raw: unknown): ModelConfig {
  if (raw === null || raw === undefined) return {};
  const parsed = modelConfigSchema.safeParse(raw);
  if (!parsed.success) throw new BadRequestError(describeIssue(file, parsed.error));
  return parsed.data;
}

/** The settings a model config sets (TorchServe's `deviceType: gpu|cpu` maps to `device` when that is unset). */
export function settingsFromConfig(config: ModelConfig): Partial<ModelSettings> {
  const settings: Partial<ModelSettings> = {};
  for (const key of ['batchSize', 'maxBatchDelay', 'minWorkers', 'maxWorkers', 'responseTimeout', 'jobQueueSize', 'device', 'precision', 'optimize', 'allowNonFinite', 'igMemoryBudget'] as const) {
    if (config[key] !== undefined) (settings as Record<string, unknown>)[key] = config[key];
  }
  const deviceType = (config as Record<string, unknown>).deviceType;
  if (settings.device === undefined && (deviceType === 'gpu' || deviceType === 'cpu')) {
    settings.device = deviceType === 'gpu' ? 'cuda' : 'cpu';
  }
  return settings;
}

function isPythonHandler(handler: string): boolean {
  // `handler.py`, `path/to/handler.py:entry`, or `module:function` (TorchServe's custom entry points).
  return /\.py(:.*)?$/.test(handler) || handler.includes(':') || handler.includes('/');
}

/**
 * Settles the handler of a model from its MANIFEST handler and the model config's `handler:` block
 * (the block's `name` wins). Throws BadRequestError for Python handlers without a built-in `handler.name`.
 */
export function resolveHandler(modelName: string, manifestHandler: string | undefined, block: HandlerBlock | undefined): HandlerConfig {
  const supported = Object.keys(HANDLER_ALIASES).join(', ');
  let chosen: { name: HandlerName; preset?: Preset } | undefined;
  if (block?.name !== undefined) {
    chosen = HANDLER_ALIASES[block.name];
    if (!chosen) throw new BadRequestError(`Model ${modelName}: model config handler.name "${block.name}" is not a built-in handler (supported: ${supported})`);
  } else if (manifestHandler === undefined || manifestHandler === '') {
    throw new BadRequestError(`Model ${modelName}: MANIFEST names no handler; set model.handler to one of ${supported}`);
  } else if (isPythonHandler(manifestHandler)) {
    throw new BadRequestError(
      `Model ${modelName}: handler "${manifestHandler}" is a Python file; torchd runs no Python. ` +
        `Add a model-config.yaml naming a built-in handler instead, e.g. "handler: {name: image_classifier}" (supported: ${supported})`,
    );
  } else {
    chosen = HANDLER_ALIASES[manifestHandler];
    if (!chosen) {
      throw new BadRequestError(
        `Model ${modelName}: handler "${manifestHandler}" is not a built-in handler (supported: ${supported}); ` +
          'name one in the MANIFEST or in model-config.yaml under handler.name',
      );
    }
  }
  // `preset` is reported only when chosen (explicitly or by the `mnist` alias); ImageNet values are the base.
  const preset = block?.preset ?? chosen.preset;
  const base = PRESETS[preset ?? 'imagenet'];
  const config: HandlerConfig = {
    name: chosen.name,
    ...(preset ? { preset } : {}),
    image_size: block?.image_size !== undefined ? block.image_size : base.image_size,
    crop_size: block?.crop_size !== undefined ? block.crop_size : base.crop_size,
    channels: block?.channels ?? base.channels,
    mean: block?.mean ?? base.mean,
    std: block?.std ?? base.std,
    topk: block?.topk ?? base.topk,
    output: block?.output ?? base.output,
    // Present only when opted in, so configs (and describe output) without it read as before.
    ...(block?.fast_decode ? { fast_decode: true } : {}),
  };
  if (HANDLER_TRAITS[config.name].imageInput) {
    // A channel-count change without matching statistics is a config mistake worth a clear message.
    for (const key of ['mean', 'std'] as const) {
      if (config[key].length !== config.channels) {
        throw new BadRequestError(`Model ${modelName}: model config handler.${key} has ${config[key].length} values but channels is ${config.channels}`);
      }
    }
  }
  return config;
}
