import type { VoiceServer } from './app.js';
import type { Config } from './config.js';
import type { Logger } from './observability/logger.js';

/**
 * What a server process does on its way out: on SIGTERM or SIGINT (and on any other signal `stop`
 * is given) it drains — the grace, then the flush — logs the outcome and exits 0, or 1 when the
 * drain failed. A promise rejected with no handler is a bug; it must cost at most the call it
 * belongs to, not the process and every other call in it, so it is logged and the server runs on.
 */
export function installShutdown(
  server: Pick<VoiceServer, 'stop'>,
  config: Config,
  logger: Logger,
): { stop(signal: string): void } {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(
      {
        signal,
        graceSeconds: config.service.drain_grace_seconds,
        flushSeconds: config.service.drain_flush_seconds,
      },
      'draining',
    );
    server.stop().then(
      () => {
        logger.info('stopped');
        logger.flush(() => process.exit(0));
      },
      (error: unknown) => {
        logger.error({ err: error }, 'drain failed');
        logger.flush(() => process.exit(1));
      },
    );
  };
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, 'unhandled promise rejection (a bug); the server keeps running');
  });
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return { stop };
}
