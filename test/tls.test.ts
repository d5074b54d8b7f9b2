import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { Code, ConnectError, createVoiceClient, type VoiceClient } from '../clients/node/index.js';
import { type Config, ConfigError } from '../server/config.js';
import { createEdge } from '../server/edge/edge.js';
import { Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { createLogger } from '../server/observability/logger.js';
import { createMetrics } from '../server/observability/metrics.js';
import { registration } from '../server/service/context.js';
import { createGrpcTransport } from '../server/transport/grpc/server.js';
import { createHealthReporter } from '../server/transport/health-reporter.js';
import { readTlsMaterial } from '../server/transport/tls.js';
import { createWebTransport } from '../server/transport/web/server.js';
import { captureLogs } from './helpers/log-capture.js';
import { testConfig } from './helpers/test-server.js';

/**
 * TLS and mutual TLS on the gRPC port, with certificates made by the openssl command for each run:
 * a CA, a server certificate for IP 127.0.0.1 and a client certificate signed by that CA, plus a
 * client certificate from another CA that the server must not accept.
 */
interface Pki {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly strangerCert: string;
  readonly strangerKey: string;
}

/** Runs openssl in `dir`; `command` is split on spaces (no argument here contains one). */
function openssl(dir: string, command: string): void {
  execFileSync('openssl', command.split(' '), { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'voice-tls-'));
  const newKey = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';
  const makeCa = (name: string) =>
    openssl(
      dir,
      `req -x509 ${newKey} -keyout ${name}.key -out ${name}.crt -days 2 -subj /CN=${name}` +
        ' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign',
    );
  const issue = (name: string, ca: string, extensions: string) => {
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl(dir, `req -new ${newKey} -keyout ${name}.key -out ${name}.csr -subj /CN=${name}`);
    openssl(
      dir,
      `x509 -req -in ${name}.csr -CA ${ca}.crt -CAkey ${ca}.key -CAcreateserial -out ${name}.crt -days 2 -extfile ${name}.ext`,
    );
  };
  makeCa('test-ca');
  makeCa('stranger-ca');
  issue('server', 'test-ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  issue('client', 'test-ca', 'extendedKeyUsage=clientAuth\n');
  issue('stranger', 'stranger-ca', 'extendedKeyUsage=clientAuth\n');
  const path = (file: string) => join(dir, file);
  return {
    dir,
    ca: path('test-ca.crt'),
    serverCert: path('server.crt'),
    serverKey: path('server.key'),
    clientCert: path('client.crt'),
    clientKey: path('client.key'),
    strangerCert: path('stranger.crt'),
    strangerKey: path('stranger.key'),
  };
}

async function serve(config: Config) {
  let calls = 0;
  const transport = createGrpcTransport({
    config,
    logger: createLogger(config.logging, { destination: captureLogs().stream }),
    metrics: createMetrics(),
    health: createHealthReporter([Synthesis.typeName]),
    services: [
      registration(Synthesis, {
        listVoices: async () => {
          calls += 1;
          return {};
        },
        synthesize: async function* () {},
        synthesizeText: async function* () {},
      } as never),
    ],
  });
  const port = await transport.listen();
  const clients: VoiceClient[] = [];
  return {
    port,
    get calls() {
      return calls;
    },
    client(options: Parameters<typeof createVoiceClient>[0]) {
      const client = createVoiceClient(options);
      clients.push(client);
      return client;
    },
    async stop() {
      for (const client of clients) client.close();
      await transport.drain(0);
    },
  };
}

/** The outcome of a ListVoices call: "ok" or the error code's name. */
async function outcome(client: VoiceClient): Promise<string> {
  try {
    await client.synthesis.listVoices({}, { timeoutMs: 5000 });
    return 'ok';
  } catch (error) {
    return Code[ConnectError.from(error).code];
  }
}

describe('TLS', () => {
  let pki: Pki;
  before(() => {
    pki = makePki();
  });

  it('serves TLS clients that trust the CA and nobody speaking plaintext', async () => {
    const server = await serve(
      testConfig({ security: { tls: { cert_file: pki.serverCert, key_file: pki.serverKey } } }),
    );
    try {
      const ca = readFileSync(pki.ca);
      const https = `https://127.0.0.1:${server.port}`;
      assert.equal(await outcome(server.client({ address: https, tls: { ca } })), 'ok');
      const health = await server
        .client({ address: https, tls: { ca } })
        .health.check({ service: '' }, { timeoutMs: 5000 });
      assert.ok(health);

      assert.notEqual(await outcome(server.client({ address: `127.0.0.1:${server.port}` })), 'ok');
      assert.notEqual(
        await outcome(server.client({ address: https })),
        'ok',
        'a certificate from an unknown CA is refused by the client',
      );
      assert.equal(server.calls, 1, 'only the TLS client with the CA reached the handler');
    } finally {
      await server.stop();
    }
  });

  it('requires a client certificate signed by client_ca_file for mutual TLS', async () => {
    const server = await serve(
      testConfig({
        security: {
          api_key_required: true,
          api_keys: ['tls-key'],
          tls: { cert_file: pki.serverCert, key_file: pki.serverKey, client_ca_file: pki.ca },
        },
      }),
    );
    try {
      const ca = readFileSync(pki.ca);
      const address = `https://127.0.0.1:${server.port}`;
      assert.notEqual(await outcome(server.client({ address, apiKey: 'tls-key', tls: { ca } })), 'ok');
      const stranger = {
        ca,
        cert: readFileSync(pki.strangerCert),
        key: readFileSync(pki.strangerKey),
      };
      assert.notEqual(await outcome(server.client({ address, apiKey: 'tls-key', tls: stranger })), 'ok');
      assert.equal(server.calls, 0);

      const tls = { ca, cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) };
      assert.equal(await outcome(server.client({ address, apiKey: 'tls-key', tls })), 'ok');
      assert.equal(
        await outcome(server.client({ address, tls })),
        'Unauthenticated',
        'a client certificate does not replace the API key',
      );
      assert.equal(server.calls, 1);
    } finally {
      await server.stop();
    }
  });

  it('serves the web port over TLS too, HTTP/1.1 and HTTP/2, with mutual TLS when a client CA is set', async () => {
    const config = testConfig({
      service: { web_port: 0 },
      security: { tls: { cert_file: pki.serverCert, key_file: pki.serverKey, client_ca_file: pki.ca } },
    });
    const logger = createLogger(config.logging, { destination: captureLogs().stream });
    const metrics = createMetrics();
    const health = createHealthReporter([Synthesis.typeName]);
    const web = createWebTransport({
      config,
      edge: createEdge({ config, logger, metrics }),
      health,
      services: [
        registration(Synthesis, {
          listVoices: async () => ({}),
          synthesize: async function* () {},
          synthesizeText: async function* () {},
        } as never),
      ],
      tls: readTlsMaterial(config.security.tls),
    });
    const port = await web.listen();
    const ca = readFileSync(pki.ca);
    const mine = { ca, cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) };
    const call = async (transport: Parameters<typeof createClient>[1]) => {
      try {
        await createClient(Synthesis, transport).listVoices({}, { timeoutMs: 5000 });
        return 'ok';
      } catch (error) {
        return Code[ConnectError.from(error).code];
      }
    };
    const baseUrl = `https://127.0.0.1:${port}`;
    try {
      assert.equal(
        await call(createGrpcWebTransport({ baseUrl, httpVersion: '1.1', nodeOptions: mine })),
        'ok',
      );
      assert.equal(
        await call(createConnectTransport({ baseUrl, httpVersion: '2', nodeOptions: mine })),
        'ok',
      );
      assert.notEqual(
        await call(createGrpcWebTransport({ baseUrl, httpVersion: '1.1', nodeOptions: { ca } })),
        'ok',
        'no client certificate, no call',
      );
      assert.notEqual(
        await call(createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: '1.1' })),
        'ok',
        'nobody speaking plaintext',
      );
    } finally {
      await web.drain(0);
    }
  });

  it('stops at start-up with one line for incomplete or broken TLS settings', async () => {
    const lineOf = (build: () => unknown): string => {
      try {
        build();
      } catch (error) {
        assert.ok(error instanceof ConfigError, String(error));
        assert.doesNotMatch(error.message, /\n/);
        return error.message;
      }
      assert.fail('accepted');
    };
    assert.equal(
      lineOf(() => testConfig({ security: { tls: { cert_file: pki.serverCert } } })),
      'config: security.tls.cert_file is set without security.tls.key_file; set both or neither',
    );
    assert.equal(
      lineOf(() => testConfig({ security: { tls: { key_file: pki.serverKey } } })),
      'config: security.tls.key_file is set without security.tls.cert_file; set both or neither',
    );
    assert.match(
      lineOf(() => testConfig({ security: { tls: { client_ca_file: pki.ca } } })),
      /client_ca_file is set without security\.tls\.cert_file/,
    );
    assert.match(
      lineOf(() =>
        testConfig({
          security: { tls: { cert_file: join(pki.dir, 'missing.crt'), key_file: pki.serverKey } },
        }),
      ),
      /^config: security\.tls\.cert_file = ".*missing\.crt" cannot be read: ENOENT$/,
    );

    const start = (tls: Record<string, string>) => () =>
      createGrpcTransport({
        config: testConfig({ security: { tls } }),
        logger: createLogger({ level: 'silent', format: 'json', output: 'stdout' }),
        metrics: createMetrics(),
        health: createHealthReporter([]),
        services: [],
      });
    assert.match(
      lineOf(start({ cert_file: pki.serverCert, key_file: pki.clientKey })),
      /^config: security\.tls\.key_file = ".*client\.key" is not the key of security\.tls\.cert_file = ".*server\.crt"$/,
    );
    const garbage = join(pki.dir, 'garbage.crt');
    writeFileSync(garbage, 'not a certificate\n');
    assert.match(
      lineOf(start({ cert_file: garbage, key_file: pki.serverKey })),
      /^config: security\.tls\.cert_file = ".*garbage\.crt" is not a valid PEM certificate: /,
    );
    assert.match(
      lineOf(start({ cert_file: pki.serverCert, key_file: pki.serverKey, client_ca_file: garbage })),
      /^config: security\.tls\.client_ca_file = ".*garbage\.crt" is not a valid PEM certificate/,
    );
  });
});
