#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { createVoiceServer } from './app.js';
import { type Config, ConfigError, loadConfig, redactedConfig } from './config.js';
import { createLogger } from './observability/logger.js';

/** Composition root: load config, build the server, start it, drain on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'usage: cortex-voice-server [--config config.yaml]\n  (or VOICE_CONFIG=config.yaml)\n',
    );
    return;
  }
  let config: Config;
  try {
    config = loadConfig({ file: values.config });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logging);
  const server = createVoiceServer(config, logger);
  logger.info({ config: redactedConfig(config) }, 'starting');
  const { grpcPort, metricsPort } = await server.start();
  logger.info({ grpcPort, metricsPort, host: config.service.host }, 'listening');
  server.loadEngines().then(
    () => logger.info({ health: server.health.status('') }, 'engines loaded'),
    (error: unknown) => {
      logger.error({ err: error }, 'model workers failed to start; engine-backed services stay NOT_SERVING');
      for (const slot of Object.values(server.engines)) {
        slot.markUnavailable(
          `the model workers failed to start: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    },
  );

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceSeconds: config.service.drain_grace_seconds }, 'draining');
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
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`cortex-voice: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
