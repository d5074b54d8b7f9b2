import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { Code, type ConnectError, createClient, type Interceptor, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { createVoiceClient, errorReasonOf } from '../clients/node/index.js';
import { createVoiceServer, type VoiceServer } from '../server/app.js';
import type { Config } from '../server/config.js';
import { createApiKeys } from '../server/edge/api-keys.js';
import { createClientTokens } from '../server/edge/client-token.js';
import { createEdge, type Edge } from '../server/edge/edge.js';
import { createCachedSynthesizer } from '../server/engines/cached-synthesizer.js';
import { createEspeakSynthesizer } from '../server/engines/espeak-ng.js';
import { Reason, VoiceError } from '../server/errors.js';
import { AudioEncoding } from '../server/gen/cortex/voice/v1/audio_pb.js';
import { Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { Health, HealthCheckResponse_ServingStatus } from '../server/gen/health/v1/health_pb.js';
import { createLogger } from '../server/observability/logger.js';
import { createMetrics, type Metrics } from '../server/observability/metrics.js';
import { type CallContext, registration } from '../server/service/context.js';
import { createGrpcTransport, type GrpcTransport } from '../server/transport/grpc/server.js';
import { createHealthReporter, type HealthReporter } from '../server/transport/health-reporter.js';
import { createWebTransport, type WebTransport } from '../server/transport/web/server.js';
import { expectError } from './helpers/errors.js';
import { captureLogs, type LogCapture } from './helpers/log-capture.js';
import { testConfig } from './helpers/test-server.js';

/**
 * The web port (gRPC-Web and Connect through connect-node) beside the gRPC port, over real
 * loopback connections with real clients: connect-node's gRPC-Web and Connect transports on
 * HTTP/1.1, the service's own gRPC client on the gRPC port. Both ports share one edge, so a
 * call gets the same answer, the same refusal and the same limits whichever way it arrives.
 */
type Protocol = 'grpc' | 'grpc-web' | 'connect';
const PROTOCOLS: readonly Protocol[] = ['grpc', 'grpc-web', 'connect'];
const SECRET = 'web-transport-test-secret-0123456789-abcdefghijk';

interface Clients {
  readonly synthesis: ReturnType<typeof createClient<typeof Synthesis>>;
  readonly health: ReturnType<typeof createClient<typeof Health>>;
}

/** A client of `protocol`: the gRPC port's own client, or connect-node on the web port. */
function clientFor(
  protocol: Protocol,
  ports: { grpc: number; web: number },
  headers: Record<string, string> = {},
  opened: Array<{ close(): void }> = [],
): Clients {
  if (protocol === 'grpc') {
    const client = createVoiceClient({
      address: `127.0.0.1:${ports.grpc}`,
      interceptors: [withHeaders(headers)],
    });
    opened.push(client);
    return client;
  }
  const options = {
    baseUrl: `http://127.0.0.1:${ports.web}`,
    httpVersion: '1.1' as const,
    interceptors: [withHeaders(headers)],
  };
  const transport: Transport =
    protocol === 'grpc-web' ? createGrpcWebTransport(options) : createConnectTransport(options);
  return { synthesis: createClient(Synthesis, transport), health: createClient(Health, transport) };
}

function withHeaders(headers: Record<string, string>): Interceptor {
  return (next) => (request) => {
    for (const [key, value] of Object.entries(headers)) request.header.set(key, value);
    return next(request);
  };
}

/** What a refused call shows its client: the same on every protocol. */
function refusalOf(error: ConnectError) {
  return {
    code: Code[error.code],
    message: error.rawMessage,
    reason: errorReasonOf(error),
  };
}

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

async function metricLines(metrics: Metrics, name: string): Promise<string> {
  return metrics.registry.getSingleMetricAsString(name);
}

describe('the real service over gRPC, gRPC-Web and Connect', () => {
  let server: VoiceServer;
  let ports: { grpc: number; web: number };
  let logs: LogCapture;
  const opened: Array<{ close(): void }> = [];

  before(async () => {
    const config = testConfig({ service: { web_port: 0 }, models: { tts: { max_text_chars: 40 } } });
    logs = captureLogs();
    server = createVoiceServer(config, createLogger(config.logging, { destination: logs.stream }));
    const espeak = createEspeakSynthesizer();
    await espeak.load();
    // Through the sentence cache: eSpeak's samples vary a little from call to call (its pitch flutter
    // runs on), and the protocols must be compared on the same audio.
    server.engines.synthesizer.set(createCachedSynthesizer(espeak, { maxBytes: 16 * 1024 * 1024 }));
    const started = await server.start();
    assert.ok(started.webPort !== undefined, 'the web port is on by default');
    ports = { grpc: started.grpcPort, web: started.webPort };
  });
  after(async () => {
    for (const client of opened) client.close();
    await server.stop(0);
  });

  it('SynthesizeText streams the same chunks on every protocol', async () => {
    const results = new Map<Protocol, unknown>();
    for (const protocol of PROTOCOLS) {
      const chunks = await collect(
        clientFor(protocol, ports, {}, opened).synthesis.synthesizeText({
          text: 'Hello there. How are you?',
          config: { encoding: AudioEncoding.LINEAR16 },
        }),
      );
      results.set(
        protocol,
        chunks.map((chunk) => ({
          sequence: chunk.sequenceNumber,
          bytes: chunk.audio.length,
          span: [chunk.textSpan?.start, chunk.textSpan?.end],
        })),
      );
    }
    const grpc = results.get('grpc') as unknown[];
    assert.ok(grpc.length >= 2, 'one chunk a sentence at least');
    assert.deepEqual(results.get('grpc-web'), grpc);
    assert.deepEqual(results.get('connect'), grpc);
  });

  it('refuses a bad request with the same code, message and reason on every protocol', async () => {
    const cases: Array<[string, Parameters<Clients['synthesis']['synthesizeText']>[0], object]> = [
      [
        'speed out of range',
        { text: 'Hello.', config: { speed: 3 } },
        { code: 'InvalidArgument', reason: 'INVALID_ARGUMENT', message: /^config\.speed: 3 is out of range/ },
      ],
      [
        'unknown voice',
        { text: 'Hello.', config: { voice: 'espeak:no-such-voice' } },
        {
          code: 'InvalidArgument',
          reason: 'UNKNOWN_RESOURCE',
          message: /^config\.voice: unknown voice "espeak:no-such-voice"/,
        },
      ],
      [
        'text too long',
        { text: 'x'.repeat(41) },
        {
          code: 'InvalidArgument',
          reason: 'INVALID_ARGUMENT',
          message: /^text: 41 characters is more than the maximum of 40/,
        },
      ],
      [
        'empty text',
        { text: '  ' },
        { code: 'InvalidArgument', reason: 'INVALID_ARGUMENT', message: /^text: empty/ },
      ],
    ];
    for (const [name, request, expected] of cases) {
      const seen = new Map<Protocol, ReturnType<typeof refusalOf>>();
      for (const protocol of PROTOCOLS) {
        const client = clientFor(protocol, ports, {}, opened);
        seen.set(protocol, refusalOf(await expectError(collect(client.synthesis.synthesizeText(request)))));
      }
      const grpc = seen.get('grpc');
      assert.ok(grpc);
      const { message, ...rest } = expected as { message: RegExp; code: string; reason: string };
      assert.deepEqual({ code: grpc.code, reason: grpc.reason }, rest, name);
      assert.match(grpc.message, message, name);
      assert.deepEqual(seen.get('grpc-web'), grpc, `${name} over gRPC-Web`);
      assert.deepEqual(seen.get('connect'), grpc, `${name} over Connect`);
    }
  });

  it('lists the same voices on every protocol and counts the calls under their protocol', async () => {
    const counts = [];
    for (const protocol of PROTOCOLS) {
      counts.push(
        (await clientFor(protocol, ports, {}, opened).synthesis.listVoices({ language: 'de' })).voices.length,
      );
    }
    assert.ok((counts[0] ?? 0) > 0);
    assert.deepEqual(counts, [counts[0], counts[0], counts[0]]);
    const text = await server.metrics.registry.getSingleMetricAsString('grpc_server_handled_total');
    for (const protocol of PROTOCOLS) {
      assert.match(
        text,
        new RegExp(`grpc_method="ListVoices",protocol="${protocol}",grpc_code="OK"\\} [1-9]`),
        `ListVoices over ${protocol} is counted`,
      );
    }
    const started = await server.metrics.registry.getSingleMetricAsString('grpc_server_started_total');
    assert.match(started, /grpc_method="SynthesizeText",protocol="grpc-web"\} [1-9]/);
  });

  it('echoes the request id on every protocol, for failed calls too', async () => {
    for (const protocol of PROTOCOLS) {
      const client = clientFor(protocol, ports, {}, opened);
      let echoed: string | null = null;
      await client.synthesis.listVoices(
        {},
        {
          headers: { 'x-request-id': `ok-${protocol}` },
          onHeader: (headers) => (echoed = headers.get('x-request-id')),
        },
      );
      assert.equal(echoed, `ok-${protocol}`, protocol);
      const failed = await expectError(
        collect(
          client.synthesis.synthesizeText(
            { text: '' },
            { headers: { 'x-request-id': `failed-${protocol}` } },
          ),
        ),
      );
      assert.equal(failed.metadata.get('x-request-id'), `failed-${protocol}`, protocol);
    }
    const logged = logs.records().filter((record) => record.msg === 'call finished');
    for (const protocol of PROTOCOLS) {
      const record = logged.find((line) => line.requestId === `failed-${protocol}`);
      assert.equal(record?.protocol, protocol);
      assert.equal(record?.code, 'INVALID_ARGUMENT');
    }
  });

  it('serves grpc.health.v1.Health on the web port too', async () => {
    const client = clientFor('grpc-web', ports);
    const synthesis = await client.health.check({ service: 'cortex.voice.v1.Synthesis' });
    assert.equal(synthesis.status, HealthCheckResponse_ServingStatus.SERVING);
    const whole = await client.health.check({ service: '' });
    assert.equal(whole.status, HealthCheckResponse_ServingStatus.NOT_SERVING, 'transcription has no engines');
    const unknown = await expectError(client.health.check({ service: 'no.such.Service' }));
    assert.equal(unknown.code, Code.NotFound);
    const listed = await clientFor('connect', ports).health.list({});
    assert.equal(listed.statuses.liveness?.status, HealthCheckResponse_ServingStatus.SERVING);
  });
});

/** The standin handlers on the Synthesis contract; what they saw, and streams that stay open. */
interface Seen {
  calls: number;
  callers: unknown[];
  abortReasons: unknown[];
}

function standIns(seen: Seen) {
  const enter = (ctx: CallContext) => {
    seen.calls += 1;
    seen.callers.push(ctx.caller);
    ctx.signal.addEventListener('abort', () => seen.abortReasons.push(ctx.signal.reason));
  };
  const untilAborted = (ctx: CallContext) =>
    new Promise<never>((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
  return {
    async *synthesize(requests: AsyncIterable<{ request: { case: string | undefined } }>, ctx: CallContext) {
      enter(ctx);
      let sequenceNumber = 0;
      for await (const request of requests)
        yield { sequenceNumber: sequenceNumber++, text: request.request.case ?? '' };
    },
    /** `text` "hold" keeps the stream open after one chunk until the call ends. */
    async *synthesizeText(request: { text: string }, ctx: CallContext) {
      enter(ctx);
      yield { sequenceNumber: 0, text: request.text };
      if (request.text === 'hold') await untilAborted(ctx);
    },
    /** `language` "wait" waits until the call ends. */
    async listVoices(request: { language: string }, ctx: CallContext) {
      enter(ctx);
      if (request.language === 'wait') await untilAborted(ctx);
      return { voices: [] };
    },
  };
}

interface Ports {
  readonly config: Config;
  readonly ports: { grpc: number; web: number };
  readonly seen: Seen;
  readonly metrics: Metrics;
  readonly logs: LogCapture;
  readonly edge: Edge;
  readonly health: HealthReporter;
  readonly grpc: GrpcTransport;
  readonly web: WebTransport;
  client(protocol: Protocol, headers?: Record<string, string>): Clients;
  stop(): Promise<void>;
}

/** Both ports around one edge, serving the stand-ins, as app.ts builds them. */
async function startPorts(
  sections: Record<string, unknown> = {},
  options: { staticRoot?: string } = {},
): Promise<Ports> {
  const service = (sections.service ?? {}) as Record<string, unknown>;
  const config = testConfig({ ...sections, service: { web_port: 0, ...service } });
  const logs = captureLogs();
  const logger = createLogger(config.logging, { destination: logs.stream });
  const metrics = createMetrics();
  const health = createHealthReporter([Synthesis.typeName]);
  const edge = createEdge({
    config,
    logger,
    metrics,
    tokens: createClientTokens({ secret: SECRET, ttlSeconds: 300 }),
  });
  const seen: Seen = { calls: 0, callers: [], abortReasons: [] };
  const services = [registration(Synthesis, standIns(seen) as never)];
  const grpc = createGrpcTransport({ config, logger, metrics, health, services, edge });
  const web = createWebTransport({
    config,
    edge,
    health,
    services,
    ...(options.staticRoot === undefined ? {} : { staticRoot: options.staticRoot }),
  });
  const ports = { grpc: await grpc.listen(), web: await web.listen() };
  health.markStarted();
  health.setServiceReady(Synthesis.typeName, true);
  const opened: Array<{ close(): void }> = [];
  return {
    config,
    ports,
    seen,
    metrics,
    logs,
    edge,
    health,
    grpc,
    web,
    client: (protocol, headers = {}) => clientFor(protocol, ports, headers, opened),
    async stop() {
      for (const client of opened) client.close();
      await Promise.all([grpc.drain(0), web.drain(0)]);
    },
  };
}

/** A plain HTTP/1.1 request, so that the test sets Origin and reads every header as sent. */
function http(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      url,
      { method: options.method ?? 'GET', headers: options.headers ?? {} },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body }),
        );
      },
    );
    request.on('error', reject);
    request.end(options.body);
  });
}

const LISTED = 'https://app.example';
const UNLISTED = 'https://evil.example';

describe('CORS on the web port', () => {
  let s: Ports;
  before(async () => {
    s = await startPorts({ service: { cors_origins: [LISTED] } });
  });
  after(() => s.stop());
  const url = () => `http://127.0.0.1:${s.ports.web}/cortex.voice.v1.Synthesis/ListVoices`;
  const corsHeaders = (headers: Record<string, unknown>) =>
    Object.keys(headers).filter((name) => name.startsWith('access-control-'));

  it('answers the preflight of a listed origin with the methods and headers gRPC-Web and Connect need', async () => {
    const response = await http(url(), {
      method: 'OPTIONS',
      headers: {
        origin: LISTED,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,x-grpc-web,authorization',
      },
    });
    assert.equal(response.status, 204);
    assert.equal(response.headers['access-control-allow-origin'], LISTED);
    const methods = String(response.headers['access-control-allow-methods']).split(', ');
    assert.ok(methods.includes('POST'));
    const allowed = String(response.headers['access-control-allow-headers']).split(', ');
    for (const name of [
      'content-type',
      'connect-protocol-version',
      'connect-timeout-ms',
      'x-grpc-web',
      'grpc-timeout',
      'x-api-key',
      'x-request-id',
      'authorization',
    ]) {
      assert.ok(allowed.includes(name), `${name} may be sent`);
    }
    assert.match(String(response.headers.vary), /Origin/);
  });

  it('exposes the status, details, reason and request id to a listed origin', async () => {
    const response = await http(url(), {
      method: 'POST',
      headers: { origin: LISTED, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(response.status, 200, response.body);
    assert.equal(response.headers['access-control-allow-origin'], LISTED);
    const exposed = String(response.headers['access-control-expose-headers']).split(', ');
    for (const name of [
      'grpc-status',
      'grpc-message',
      'grpc-status-details-bin',
      'grpc-retry-pushback-ms',
      'x-request-id',
    ]) {
      assert.ok(exposed.includes(name), `${name} is exposed`);
    }
    assert.ok(response.headers['x-request-id'], 'the request id is in the response headers');
  });

  it('gives an origin not listed no CORS header at all, and refuses its preflight', async () => {
    const preflight = await http(url(), {
      method: 'OPTIONS',
      headers: { origin: UNLISTED, 'access-control-request-method': 'POST' },
    });
    assert.equal(preflight.status, 403);
    assert.deepEqual(corsHeaders(preflight.headers), []);
    const call = await http(url(), {
      method: 'POST',
      headers: { origin: UNLISTED, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.deepEqual(corsHeaders(call.headers), [], 'the browser will not let the page read it');
  });
});

describe('one edge policy for both ports', () => {
  it('requires the API key on every protocol and refuses alike', async () => {
    const s = await startPorts({
      security: { api_key_required: true, api_keys: ['key-a'], rate_limit: { enabled: false } },
    });
    try {
      const refusals = [];
      for (const protocol of PROTOCOLS) {
        refusals.push(refusalOf(await expectError(s.client(protocol).synthesis.listVoices({}))));
        const wrong = await expectError(
          s.client(protocol, { 'x-api-key': 'key-b' }).synthesis.listVoices({}),
        );
        assert.equal(wrong.code, Code.Unauthenticated, protocol);
        await s.client(protocol, { 'x-api-key': 'key-a' }).synthesis.listVoices({});
      }
      assert.equal(refusals[0]?.code, 'Unauthenticated');
      assert.equal(refusals[0]?.reason, 'UNAUTHENTICATED');
      assert.match(refusals[0]?.message ?? '', /needs an API key in x-api-key metadata/);
      assert.deepEqual(refusals[1], refusals[0]);
      assert.deepEqual(refusals[2], refusals[0]);
      assert.equal(s.seen.calls, 3, 'only the calls with the key reached the handler');
      const rejected = await metricLines(s.metrics, 'voice_rejected_calls_total');
      assert.match(rejected, /reason="unauthenticated"\} 6/);
      assert.ok(!s.logs.text().includes('key-a'));
    } finally {
      await s.stop();
    }
  });

  it('accepts a client token instead of the key on the web port, as the caller of that key', async () => {
    const s = await startPorts({
      security: { api_key_required: true, api_keys: ['key-a'], rate_limit: { enabled: false } },
    });
    try {
      const keys = createApiKeys(['key-a']);
      const id = keys.identify('key-a');
      assert.ok(id);
      const name = keys.account(id)?.name;
      assert.match(String(name), /^unnamed-[0-9a-f]{8}$/, 'a key without a name is named after its digest');
      const tokens = createClientTokens({ secret: SECRET, ttlSeconds: 300 });
      const { token } = tokens.mint({ caller: { id, via: 'api-key' } });
      for (const protocol of PROTOCOLS) {
        await s.client(protocol, { authorization: `Bearer ${token}` }).synthesis.listVoices({});
      }
      assert.deepEqual(s.seen.callers, [
        { id, via: 'client-token', name },
        { id, via: 'client-token', name },
        { id, via: 'client-token', name },
      ]);
      const forged = await expectError(
        s.client('connect', { authorization: `Bearer ${token.slice(0, -2)}xx` }).synthesis.listVoices({}),
      );
      assert.equal(forged.code, Code.Unauthenticated);
      assert.match(forged.rawMessage, /signature is not valid/);
      const other = createClientTokens({ secret: `${SECRET}-other`, ttlSeconds: 300 }).mint({
        caller: { id, via: 'api-key' },
      });
      const foreign = await expectError(
        s.client('grpc-web', { authorization: `Bearer ${other.token}` }).synthesis.listVoices({}),
      );
      assert.equal(foreign.code, Code.Unauthenticated);
      const narrow = tokens.mint({
        caller: { id, via: 'api-key' },
        scopes: ['/cortex.voice.v1.Synthesis/ListVoices'],
      });
      const outOfScope = await expectError(
        collect(
          s.client('grpc-web', { authorization: `Bearer ${narrow.token}` }).synthesis.synthesizeText({}),
        ),
      );
      assert.equal(outOfScope.code, Code.PermissionDenied);
      assert.equal(errorReasonOf(outOfScope), 'PERMISSION_DENIED');
      assert.ok(!s.logs.text().includes(token), 'the token never reaches the logs');
    } finally {
      await s.stop();
    }
  });

  it('refuses an address outside allowed_ips on every protocol, health excepted', async () => {
    const s = await startPorts({ security: { allowed_ips: ['10.0.0.0/8'] } });
    try {
      for (const protocol of PROTOCOLS) {
        const error = await expectError(s.client(protocol).synthesis.listVoices({}));
        assert.equal(error.code, Code.PermissionDenied, protocol);
        assert.match(error.rawMessage, /client address 127\.0\.0\.1 is not in security\.allowed_ips/);
        assert.equal(errorReasonOf(error), 'PERMISSION_DENIED');
        await s.client(protocol).health.check({ service: '' });
      }
      assert.equal(s.seen.calls, 0);
    } finally {
      await s.stop();
    }
  });

  it('counts one rate limit per key across both ports, with the retry hint on every protocol', async () => {
    const s = await startPorts({
      security: {
        api_key_required: true,
        api_keys: ['key-a', 'key-b'],
        rate_limit: { max_requests_per_minute: 3 },
      },
    });
    try {
      const key = { 'x-api-key': 'key-a' };
      for (const protocol of PROTOCOLS) await s.client(protocol, key).synthesis.listVoices({});
      for (const protocol of PROTOCOLS) {
        const limited = await expectError(s.client(protocol, key).synthesis.listVoices({}));
        assert.equal(limited.code, Code.ResourceExhausted, protocol);
        assert.match(limited.rawMessage, /^the API key "unnamed-[0-9a-f]{8}" has used its 3 calls a minute/);
        assert.equal(errorReasonOf(limited), 'RATE_LIMITED', protocol);
        const pushback = Number(limited.metadata.get('grpc-retry-pushback-ms'));
        assert.ok(pushback > 15_000 && pushback <= 20_000, `${protocol}: pushback ${pushback} ms`);
        const detail = (limited.details as Array<{ type: string; value: Uint8Array }>).find(
          (candidate) => candidate.type === 'google.rpc.RetryInfo',
        );
        assert.ok(detail, `${protocol}: RetryInfo among the details`);
        assert.ok(Math.abs(retryDelayOf(detail.value) - pushback) <= 1, protocol);
      }
      await s.client('connect', { 'x-api-key': 'key-b' }).synthesis.listVoices({});
      assert.equal(s.seen.calls, 4);
    } finally {
      await s.stop();
    }
  });

  it('counts one stream limit per key across both ports, and frees a slot when a stream ends', async () => {
    const s = await startPorts({
      security: { api_key_required: true, api_keys: ['key-a'], rate_limit: { max_concurrent_streams: 2 } },
    });
    const key = { 'x-api-key': 'key-a' };
    const holds: AbortController[] = [];
    const hold = async (protocol: Protocol) => {
      const controller = new AbortController();
      holds.push(controller);
      const iterator = s
        .client(protocol, key)
        .synthesis.synthesizeText({ text: 'hold' }, { signal: controller.signal })
        [Symbol.asyncIterator]();
      return { first: await iterator.next(), controller, iterator };
    };
    try {
      const overGrpc = await hold('grpc');
      const overWeb = await hold('grpc-web');
      assert.equal(overGrpc.first.done, false);
      assert.equal(overWeb.first.done, false);
      const third = await expectError(hold('connect'));
      assert.equal(third.code, Code.ResourceExhausted);
      assert.match(third.rawMessage, /^the API key "unnamed-[0-9a-f]{8}" already has 2 streams open/);
      assert.equal(third.metadata.get('grpc-retry-pushback-ms'), '1000');
      overWeb.controller.abort();
      await overWeb.iterator.next().catch(() => undefined);
      await waitFor(() => s.edge.activeCalls === 1);
      const again = await hold('connect');
      assert.equal(again.first.done, false, 'the ended stream freed its slot');
      const canceled = s.seen.abortReasons.find(
        (reason) => reason instanceof VoiceError && reason.reason === Reason.Cancelled,
      );
      assert.ok(canceled, 'the cancelled web stream was cancelled for its handler');
    } finally {
      for (const controller of holds) controller.abort();
      await s.stop();
    }
  });

  it('refuses a message above service.max_message_bytes on the web port before any handler runs', async () => {
    const s = await startPorts({ service: { max_message_bytes: 65_536 } });
    try {
      for (const protocol of ['grpc-web', 'connect'] as const) {
        const error = await expectError(
          s.client(protocol).synthesis.listVoices({ language: 'x'.repeat(70_000) }),
        );
        assert.equal(error.code, Code.ResourceExhausted, protocol);
      }
      assert.equal(s.seen.calls, 0);
      await waitFor(() => s.edge.activeCalls === 0);
      const handled = await metricLines(s.metrics, 'grpc_server_handled_total');
      assert.match(handled, /protocol="grpc-web",grpc_code="RESOURCE_EXHAUSTED"\} 1/);
      assert.match(handled, /protocol="connect",grpc_code="RESOURCE_EXHAUSTED"\} 1/);
    } finally {
      await s.stop();
    }
  });
});

describe('deadlines, cancellation and drain on the web port', () => {
  it("ends a call at the client's deadline and at service.timeout", async () => {
    const s = await startPorts({ service: { timeout: 1 } });
    try {
      const deadline = await expectError(
        s.client('connect').synthesis.listVoices({ language: 'wait' }, { timeoutMs: 200 }),
      );
      assert.equal(deadline.code, Code.DeadlineExceeded);
      await waitFor(() => s.seen.abortReasons.length === 1);
      const reason = s.seen.abortReasons[0];
      assert.ok(reason instanceof VoiceError && reason.reason === Reason.DeadlineExceeded, String(reason));
      const startedAt = Date.now();
      const timeout = await expectError(s.client('grpc-web').synthesis.listVoices({ language: 'wait' }));
      assert.equal(timeout.code, Code.DeadlineExceeded);
      assert.match(timeout.rawMessage, /longer than service\.timeout \(1 s\)/);
      assert.ok(Date.now() - startedAt >= 900);
    } finally {
      await s.stop();
    }
  });

  it('drains both ports together: new calls UNAVAILABLE, calls in flight get the grace, then are cancelled', async () => {
    const s = await startPorts();
    const input = new AbortController();
    try {
      const webStream = s
        .client('grpc-web')
        .synthesis.synthesizeText({ text: 'hold' })
        [Symbol.asyncIterator]();
      assert.equal((await webStream.next()).done, false);
      async function* requests() {
        yield { request: { case: 'flush' as const, value: {} } };
        await sleep(60_000, undefined, { signal: input.signal }).catch(() => {});
      }
      const grpcStream = s.client('grpc').synthesis.synthesize(requests())[Symbol.asyncIterator]();
      assert.equal((await grpcStream.next()).done, false);
      assert.equal(s.edge.activeCalls, 2);

      const drained = Promise.all([s.grpc.drain(400), s.web.drain(400)]);
      await sleep(50);
      for (const protocol of ['grpc-web', 'connect'] as const) {
        const refused = await expectError(s.client(protocol).synthesis.listVoices({}));
        assert.equal(refused.code, Code.Unavailable, protocol);
        assert.equal(errorReasonOf(refused), 'DRAINING');
        assert.match(refused.rawMessage, /shutting down/);
      }
      const health = await s.client('grpc-web').health.check({ service: '' });
      assert.equal(
        health.status,
        HealthCheckResponse_ServingStatus.NOT_SERVING,
        'health answers while draining',
      );

      const webEnd = await expectError(webStream.next());
      const grpcEnd = await expectError(grpcStream.next());
      for (const end of [webEnd, grpcEnd]) {
        assert.equal(end.code, Code.Unavailable);
        assert.equal(errorReasonOf(end), 'DRAINING');
      }
      await drained;
      assert.equal(s.edge.activeCalls, 0);
      await assert.rejects(
        fetch(`http://127.0.0.1:${s.ports.web}/`),
        'the web port is closed after the drain',
      );
    } finally {
      input.abort();
      await s.stop();
    }
  });

  it('serves bidirectional streams over h2c on the web port', async () => {
    const s = await startPorts();
    try {
      const transport = createConnectTransport({
        baseUrl: `http://127.0.0.1:${s.ports.web}`,
        httpVersion: '2',
      });
      const client = createClient(Synthesis, transport);
      async function* requests() {
        yield { request: { case: 'text' as const, value: 'a' } };
        yield { request: { case: 'flush' as const, value: {} } };
      }
      const seen = (await collect(client.synthesize(requests()))).map(
        (response) => `${response.sequenceNumber}:${response.text}`,
      );
      assert.deepEqual(seen, ['0:text', '1:flush']);
      const logged = s.logs
        .records()
        .find((record) => record.method === 'cortex.voice.v1.Synthesis/Synthesize');
      assert.equal(logged?.protocol, 'connect');
    } finally {
      await s.stop();
    }
  });
});

describe('the demo page and the browser files', () => {
  it('serves index.html at / and the build at /web/, and nothing outside it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'voice-web-'));
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>demo</title>');
    writeFileSync(join(root, 'demo.js'), 'export {};\n');
    mkdirSync(join(root, 'types'));
    writeFileSync(join(root, 'types', 'index.d.ts'), 'export {};\n');
    const s = await startPorts({}, { staticRoot: root });
    try {
      const base = `http://127.0.0.1:${s.ports.web}`;
      const page = await fetch(`${base}/`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /text\/html/);
      assert.match(await page.text(), /<title>demo<\/title>/);
      const script = await fetch(`${base}/web/demo.js`);
      assert.equal(script.status, 200);
      assert.match(script.headers.get('content-type') ?? '', /text\/javascript/);
      assert.equal((await fetch(`${base}/web/types/index.d.ts`)).status, 200);
      for (const path of ['/web/missing.js', '/web/%2e%2e/package.json', '/web/..%2Findex.html', '/other']) {
        const response = await http(`${base}${path}`);
        assert.equal(response.status, 404, path);
      }
    } finally {
      await s.stop();
    }
  });

  it('answers 404 with a clear line when the page is not built, and serves no page when demo_page is off', async () => {
    const missing = await startPorts({}, { staticRoot: join(tmpdir(), 'voice-web-not-built') });
    try {
      const response = await fetch(`http://127.0.0.1:${missing.ports.web}/`);
      assert.equal(response.status, 404);
      assert.match(await response.text(), /the demo page is not built/);
      await missing.client('grpc-web').synthesis.listVoices({});
    } finally {
      await missing.stop();
    }
    const off = await startPorts({ service: { demo_page: false } });
    try {
      const response = await fetch(`http://127.0.0.1:${off.ports.web}/`);
      assert.equal(response.status, 404);
      assert.equal(await response.text(), 'not found\n');
    } finally {
      await off.stop();
    }
  });

  it('opens no web port with service.web_enabled off', async () => {
    const config = testConfig({ service: { web_enabled: false } });
    const server = createVoiceServer(
      config,
      createLogger(config.logging, { destination: captureLogs().stream }),
    );
    try {
      const started = await server.start();
      assert.equal(started.webPort, undefined);
    } finally {
      await server.stop(0);
    }
  });
});

/** google.rpc.RetryInfo { Duration retry_delay = 1 } in milliseconds. */
function retryDelayOf(bytes: Uint8Array): number {
  const reader = new BinaryReader(bytes);
  let ms = 0;
  while (reader.pos < reader.len) {
    const [field] = reader.tag();
    assert.equal(field, 1);
    const duration = new BinaryReader(reader.bytes());
    while (duration.pos < duration.len) {
      const [durationField] = duration.tag();
      if (durationField === 1) ms += Number(duration.int64()) * 1000;
      else ms += duration.int32() / 1e6;
    }
  }
  return ms;
}

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail('condition not reached in time');
    await sleep(10);
  }
}
