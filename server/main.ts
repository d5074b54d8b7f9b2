#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { createVoiceServer, type VoiceServer } from './app.js';
import { type Config, ConfigError, loadConfig, redactedConfig } from './config.js';
import { Reason, VoiceError } from './errors.js';
import { createLogger, type Logger } from './observability/logger.js';
import { installShutdown } from './shutdown.js';

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
  // A bad config stops start-up with one line and exit code 2, whether the schema or the parts
  // built from it (TLS files, key files) find the problem.
  let config: Config;
  let logger: Logger;
  let server: VoiceServer;
  try {
    config = loadConfig({ file: values.config });
    logger = createLogger(config.logging);
    server = createVoiceServer(config, logger);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  logger.info({ config: redactedConfig(config) }, 'starting');
  const { grpcPort, webPort, metricsPort } = await server.start();
  logger.info({ grpcPort, webPort, metricsPort, host: config.service.host }, 'listening');
  server.loadEngines().then(
    () => logger.info({ health: server.health.status('') }, 'engines loaded'),
    (error: unknown) => {
      if (error instanceof VoiceError && error.reason === Reason.Draining) {
        logger.info('stopped before the model workers finished loading');
        return;
      }
      logger.error({ err: error }, 'model workers failed to start; engine-backed services stay NOT_SERVING');
      for (const slot of Object.values(server.engines)) {
        slot.markUnavailable(
          `the model workers failed to start: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    },
  );

  installShutdown(server, config, logger);
}

main().catch((error: unknown) => {
  process.stderr.write(`cortex-voice: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
