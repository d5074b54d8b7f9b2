import { type DestinationStream, type Logger, pino } from 'pino';
import type { Config } from '../config.js';

export type { Logger } from 'pino';

/** Paths of secrets in log records; pino replaces their values. */
export const REDACTED_PATHS = [
  'apiKey',
  'api_key',
  'metadata["x-api-key"]',
  'metadata.authorization',
  'headers["x-api-key"]',
  'headers.authorization',
  'config.security.api_keys',
  'security.api_keys',
  'config.security.client_tokens.secret',
  'security.client_tokens.secret',
  'token',
];

export interface CreateLoggerOptions {
  /** Where lines go instead of the configured output (tests pass a stream they read). */
  readonly destination?: DestinationStream;
}

/** The service's root logger: JSON lines by default, pretty only when asked for. */
export function createLogger(config: Config['logging'], options: CreateLoggerOptions = {}): Logger {
  const base = {
    level: config.level,
    base: { service: 'cortex-voice' },
    redact: { paths: REDACTED_PATHS, censor: '<redacted>' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (options.destination) return pino(base, options.destination);
  const fd = config.output === 'stderr' ? 2 : 1;
  if (config.format === 'pretty') {
    const target = config.output === 'stdout' || config.output === 'stderr' ? fd : config.output;
    return pino({
      ...base,
      transport: { target: 'pino-pretty', options: { destination: target, colorize: false } },
    });
  }
  const destination =
    config.output === 'stdout' || config.output === 'stderr'
      ? pino.destination({ dest: fd, sync: false })
      : pino.destination({ dest: config.output, mkdir: true, sync: false });
  return pino(base, destination);
}
