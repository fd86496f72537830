// `torchd start` (serve a model store in the foreground) and `torchd archive` (write a .mar).
import { Command, Option } from 'commander';
import { runArchive } from './archiver/index.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { HANDLER_NAMES } from './handlers/names.js';
import { serverVersion } from './version.js';
import { startServer } from './server.js';
import { settleHeapGrowth } from './v8-heap.js';

interface StartFlags {
  modelStore?: string;
  models?: string;
  tsConfig?: string;
  inferenceAddress?: string;
  managementAddress?: string;
  metricsAddress?: string;
  enableTokenAuth?: boolean;
  disableTokenAuth?: boolean;
  foreground?: boolean;
  logLevel?: string;
}

async function start(flags: StartFlags): Promise<void> {
  const logger = createLogger(flags.logLevel ? { level: flags.logLevel as 'info' } : {});
  const config = await loadConfig(
    flags.tsConfig,
    {
      modelStore: flags.modelStore,
      models: flags.models,
      inferenceAddress: flags.inferenceAddress,
      managementAddress: flags.managementAddress,
      metricsAddress: flags.metricsAddress,
      enableTokenAuth: flags.disableTokenAuth ? false : flags.enableTokenAuth,
    },
    process.cwd(),
    process.env,
  );
  const heapGrowth = settleHeapGrowth(config.heapGrowingPercent);
  logger.info({ heapGrowingPercent: heapGrowth }, 'V8 heap growing factor');
  const server = await startServer(config, { logger });
  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    // A second signal means "now": skip the grace period.
    if (++signals > 1) process.exit(1);
    logger.info({ signal }, 'signal received');
    // drain_delay and shutdown_timeout come from the config; a forced drain still exits 0 (every
    // accepted request was answered, some with 503).
    server.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

interface ArchiveFlags {
  modelName: string;
  version: string;
  serializedFile: string;
  handler: string;
  extraFiles?: string;
  config?: string;
  exportPath: string;
  force?: boolean;
}

async function archive(flags: ArchiveFlags): Promise<void> {
  const out = await runArchive({
    ...flags,
    extraFiles: flags.extraFiles?.split(',').map((f) => f.trim()).filter(Boolean),
    force: flags.force === true,
  });
  process.stdout.write(`${out}\n`);
}

export function buildProgram(): Command {
  const program = new Command('torchd')
    .description('TorchServe-compatible model server over LibTorch')
    .version(serverVersion)
    // `torchd archive --version 2.0` is the model version (torch-model-archiver's flag), not torchd's.
    .enablePositionalOptions()
    .showHelpAfterError();

  program
    .command('start')
    .description('serve a model store (foreground; SIGINT/SIGTERM stop it gracefully)')
    .option('--model-store <dir>', 'folder holding .mar archives and/or exploded model folders')
    .option('--models <list>', 'models to load: NAME=FILE.mar[,NAME2=FILE2.mar] or all')
    .option('--ts-config <file>', 'TorchServe config.properties')
    .option('--inference-address <url>', 'inference listener (default http://127.0.0.1:8080)')
    .option('--management-address <url>', 'management listener (default http://127.0.0.1:8081)')
    .option('--metrics-address <url>', 'metrics listener (default http://127.0.0.1:8082)')
    .option('--enable-token-auth', 'require the keys written to key_file.json')
    .option('--disable-token-auth', 'TorchServe spelling: no token auth (the default)')
    .option('--foreground', 'accepted for TorchServe compatibility; torchd always runs in the foreground')
    .addOption(new Option('--start', 'accepted for TorchServe compatibility (`torchd --start …` is `torchd start …`)').hideHelp())
    .addOption(new Option('--ncs', 'accepted for TorchServe compatibility (no config snapshots)').hideHelp())
    .addOption(new Option('--log-level <level>', 'pino level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']))
    .action((flags: StartFlags) => start(flags));

  program
    .command('archive')
    .description('write a model archive (.mar) from a TorchScript file')
    .requiredOption('--model-name <name>', 'model name')
    .option('--version <version>', 'model version', '1.0')
    .requiredOption('--serialized-file <file>', 'TorchScript file (torch.jit.save)')
    .option('--handler <name>', `built-in handler: ${HANDLER_NAMES.join(' or ')}`, 'image_classifier')
    .option('--extra-files <files>', 'comma-separated files to add at the archive root (e.g. index_to_name.json)')
    .option('--config <file>', 'model-config.yaml to include')
    .option('--export-path <dir>', 'where to write NAME.mar', '.')
    .option('--force', 'overwrite an existing archive')
    .action((flags: ArchiveFlags) => archive(flags));
  return program;
}

/**
 * TorchServe's command line (`torchserve --start --model-store=… --ts-config=…`, as KServe's torchserve
 * runtime runs it) becomes `torchd start …`, so a runtime's `args` only swap the program name. `--start`
 * runs in the foreground: in a container torchd is the main process (TorchServe daemonises instead).
 */
export function torchserveArgs(args: string[]): string[] {
  if (args.length === 0 || !args[0].startsWith('-')) return args;
  if (args.includes('--stop')) {
    throw new Error('--stop: torchd has no daemon to stop; it runs in the foreground and stops gracefully on SIGTERM (docker stop, kubectl delete pod, Ctrl-C)');
  }
  if (args.includes('--start') || args.includes('--foreground')) return ['start', ...args.filter((a) => a !== '--start')];
  return args;
}

export async function main(argv = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync([...argv.slice(0, 2), ...torchserveArgs(argv.slice(2))]);
  } catch (err) {
    const message = err instanceof ConfigError ? err.message : `torchd: ${(err as Error).message ?? String(err)}`;
    process.stderr.write(`${message}\n`);
    process.exit(err instanceof ConfigError ? 2 : 1);
  }
}

// Run when executed (bin/torchd.js imports this module), not when a test imports buildProgram.
const entry = process.argv[1] ?? '';
if (/(^|[\\/])(torchd(\.js)?|cli\.[jt]s)$/.test(entry)) await main();
