import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createVoiceClient, type VoiceClient } from '../../clients/node/index.js';
import { createVoiceServer, type VoiceServer, type VoiceServerOptions } from '../../server/app.js';
import { type Config, loadConfig } from '../../server/config.js';
import { createLogger } from '../../server/observability/logger.js';
import { captureLogs, type LogCapture } from './log-capture.js';

export interface TestServer {
  readonly server: VoiceServer;
  readonly config: Config;
  readonly address: string;
  readonly metricsUrl: string;
  /** The gRPC-Web / Connect port, when the web transport is on. */
  readonly webPort: number | undefined;
  readonly client: VoiceClient;
  readonly logs: LogCapture;
  /** Drains with `graceMs` (0), then `flushMs` (0) for calls to finish what they took, and stops. */
  stop(graceMs?: number, flushMs?: number): Promise<void>;
}

/**
 * Writes a config file for the test (sections as in config.yaml) and returns its path. Start-up
 * downloads are off unless a test turns them on, the hub is a closed loopback port unless a test
 * names its mirror (no test ever reaches past this machine), and the web port is ephemeral.
 */
export function writeConfigFile(sections: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'voice-config-'));
  const file = join(dir, 'config.yaml');
  const models = (sections.models ?? {}) as Record<string, unknown>;
  const service = (sections.service ?? {}) as Record<string, unknown>;
  writeFileSync(
    file,
    stringify({
      ...sections,
      // The web port is ephemeral too unless a test names one: tests never bind 8080.
      service: { web_port: 0, ...service },
      models: { allow_downloads: false, hub_url: CLOSED_LOOPBACK_HUB, ...models },
    }),
  );
  return file;
}

/** A loopback port nothing listens on (2: unassigned, and not one fetch refuses to try): a fetch fails at once. */
export const CLOSED_LOOPBACK_HUB = 'http://127.0.0.1:2';

/** Loads a config the way the server does, from a YAML file, with loopback and ephemeral ports. */
export function testConfig(sections: Record<string, unknown> = {}, env: Record<string, string> = {}): Config {
  const service = (sections.service ?? {}) as Record<string, unknown>;
  const monitoring = (sections.monitoring ?? {}) as Record<string, unknown>;
  const logging = (sections.logging ?? {}) as Record<string, unknown>;
  const file = writeConfigFile({
    ...sections,
    service: { host: '127.0.0.1', port: 0, drain_grace_seconds: 2, drain_flush_seconds: 0, ...service },
    monitoring: { host: '127.0.0.1', prometheus_port: 0, ...monitoring },
    logging: { level: 'debug', ...logging },
  });
  return loadConfig({ file, env });
}

/** Starts the real server in this process on 127.0.0.1 with ephemeral ports, and a real client. */
export async function startTestServer(
  sections: Record<string, unknown> = {},
  prepare?: (server: VoiceServer) => void | Promise<void>,
  options: VoiceServerOptions = {},
): Promise<TestServer> {
  const config = testConfig(sections);
  const logs = captureLogs();
  const server = createVoiceServer(
    config,
    createLogger(config.logging, { destination: logs.stream }),
    options,
  );
  await prepare?.(server);
  const { grpcPort, webPort, metricsPort } = await server.start();
  const address = `127.0.0.1:${grpcPort}`;
  const client = createVoiceClient({ address });
  let stopped = false;
  return {
    server,
    config,
    address,
    metricsUrl: `http://127.0.0.1:${metricsPort}${config.monitoring.metrics_endpoint}`,
    webPort,
    client,
    logs,
    async stop(graceMs = 0, flushMs = 0) {
      if (stopped) return;
      stopped = true;
      client.close();
      await server.stop(graceMs, flushMs);
    },
  };
}

/** Starts the test server with the generated models and waits until its engines are loaded. */
export async function startServerWithEngines(
  sections: Record<string, unknown> = {},
  options: VoiceServerOptions = {},
): Promise<TestServer> {
  const { modelSections, testModels } = await import('./models.js');
  const base = modelSections(await testModels());
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(sections)) {
    const current = merged[key];
    merged[key] =
      current && typeof current === 'object' && value && typeof value === 'object'
        ? { ...(current as object), ...(value as object) }
        : value;
  }
  return startTestServer(merged, (server) => server.loadEngines(), options);
}
