// One pino logger for the process: JSON lines on stdout (TorchServe users pipe these to their log stack).
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LoggerOptions {
  /** pino level; TORCHD_LOG_LEVEL overrides the default 'info'. */
  level?: LevelWithSilent;
  /** Where lines go (default stdout); tests pass a stream to read the lines back. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? (process.env.TORCHD_LOG_LEVEL as LevelWithSilent | undefined) ?? 'info';
  const base = { name: 'torchd' };
  return options.destination ? pino({ level, base }, options.destination) : pino({ level, base });
}
