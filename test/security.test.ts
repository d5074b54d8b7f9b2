import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import {
  Code,
  ConnectError,
  createVoiceClient,
  errorInfoOf,
  errorReasonOf,
  ServingStatus,
  type VoiceClient,
} from '../clients/node/index.js';
import { type Config, ConfigError } from '../server/config.js';
import { clientAddress, createAddressRanges } from '../server/edge/addresses.js';
import { createRateLimiter, createStreamCounter } from '../server/edge/rate-limiter.js';
import { statusDetails } from '../server/edge/wire-status.js';
import { ERROR_DOMAIN, Reason } from '../server/errors.js';
import { Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { createLogger } from '../server/observability/logger.js';
import { createMetrics, type Metrics } from '../server/observability/metrics.js';
import { type CallContext, registration } from '../server/service/context.js';
import { createGrpcTransport, type GrpcTransport } from '../server/transport/grpc/server.js';
import { createHealthReporter } from '../server/transport/health-reporter.js';
import { expectError } from './helpers/errors.js';
import { captureLogs, type LogCapture } from './helpers/log-capture.js';
import { createReflectionClient } from './helpers/reflection-client.js';
import { testConfig } from './helpers/test-server.js';

/**
 * Admission control of the gRPC transport — API keys, allowed addresses, rate and stream limits —
 * over real loopback connections, with stand-in handlers on the Synthesis contract (no engines).
 * A call that reaches a handler answers OK; a refused one never gets there.
 */
interface Seen {
  calls: number;
  metadata: Array<ReadonlyMap<string, string>>;
}

function standInHandlers(seen: Seen) {
  const enter = (ctx: CallContext) => {
    seen.calls += 1;
    seen.metadata.push(ctx.metadata);
  };
  return {
    async *synthesize(requests: AsyncIterable<unknown>, ctx: CallContext) {
      enter(ctx);
      let sequenceNumber = 0;
      for await (const _ of requests) yield { sequenceNumber: sequenceNumber++ };
    },
    async *synthesizeText(_request: unknown, ctx: CallContext) {
      enter(ctx);
      yield { sequenceNumber: 0 };
    },
    async listVoices(_request: unknown, ctx: CallContext) {
      enter(ctx);
      return {};
    },
  };
}

interface Secured {
  readonly config: Config;
  readonly port: number;
  readonly seen: Seen;
  readonly metrics: Metrics;
  readonly logs: LogCapture;
  client(options?: { apiKey?: string; host?: string }): VoiceClient;
  stop(): Promise<void>;
}

async function startSecured(sections: Record<string, unknown>, env: Record<string, string> = {}) {
  const config = testConfig(sections, env);
  const seen: Seen = { calls: 0, metadata: [] };
  const metrics = createMetrics();
  const logs = captureLogs();
  const health = createHealthReporter([Synthesis.typeName]);
  const transport: GrpcTransport = createGrpcTransport({
    config,
    logger: createLogger(config.logging, { destination: logs.stream }),
    metrics,
    health,
    services: [registration(Synthesis, standInHandlers(seen) as never)],
  });
  const port = await transport.listen();
  health.markStarted();
  health.setServiceReady(Synthesis.typeName, true);
  const clients: VoiceClient[] = [];
  const secured: Secured = {
    config,
    port,
    seen,
    metrics,
    logs,
    client(options = {}) {
      const host = options.host ?? '127.0.0.1';
      const client = createVoiceClient({
        address: `${host.includes(':') ? `[${host}]` : host}:${port}`,
        ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
      });
      clients.push(client);
      return client;
    },
    async stop() {
      for (const client of clients) client.close();
      await transport.drain(0);
    },
  };
  return secured;
}

async function rejectedCount(metrics: Metrics, reason: string): Promise<number> {
  const metric = await metrics.rejectedCalls.get();
  return metric.values.find((value) => value.labels.reason === reason)?.value ?? 0;
}

const noLimits = { enabled: false };

describe('API keys', () => {
  it('refuses calls without a key or with a wrong key, and admits any configured key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'voice-keys-'));
    const keysFile = join(dir, 'keys.txt');
    writeFileSync(keysFile, '# rotated monthly\nkey-from-file-3\n\n  key-from-file-4  \n');
    const s = await startSecured({
      security: {
        api_key_required: true,
        api_keys: ['key-inline-1', 'key-inline-2'],
        api_keys_file: keysFile,
        rate_limit: noLimits,
      },
    });
    try {
      const missing = await expectError(s.client().synthesis.listVoices({}));
      assert.equal(missing.code, Code.Unauthenticated);
      assert.match(missing.rawMessage, /needs an API key in x-api-key metadata/);
      assert.equal(errorReasonOf(missing), 'UNAUTHENTICATED');

      const wrong = await expectError(s.client({ apiKey: 'key-guessed-9' }).synthesis.listVoices({}));
      assert.equal(wrong.code, Code.Unauthenticated);
      assert.match(wrong.rawMessage, /API key in x-api-key metadata is not valid/);

      const prefix = await expectError(s.client({ apiKey: 'key-inline-' }).synthesis.listVoices({}));
      assert.equal(prefix.code, Code.Unauthenticated, 'a prefix of a key is not the key');
      assert.equal(s.seen.calls, 0, 'no refused call reached the handler');

      for (const key of ['key-inline-1', 'key-inline-2', 'key-from-file-3', 'key-from-file-4']) {
        await s.client({ apiKey: key }).synthesis.listVoices({});
      }
      const streamed = [];
      for await (const response of s.client({ apiKey: 'key-inline-2' }).synthesis.synthesizeText({}))
        streamed.push(response);
      assert.equal(streamed.length, 1);
      assert.equal(s.seen.calls, 5);
      assert.ok(
        s.seen.metadata.every((metadata) => !metadata.has('x-api-key')),
        'the key is taken out of the metadata handlers see',
      );
      assert.equal(await rejectedCount(s.metrics, 'unauthenticated'), 3);

      const log = s.logs.text();
      assert.match(log, /"code":"UNAUTHENTICATED"/, 'refused calls are logged');
      for (const key of [
        'key-inline-1',
        'key-inline-2',
        'key-from-file-3',
        'key-from-file-4',
        'key-guessed-9',
      ])
        assert.ok(!log.includes(key), `${key} does not reach the logs`);
    } finally {
      await s.stop();
    }
  });

  it('lets health checks and reflection through without a key by default', async () => {
    const s = await startSecured({
      security: { api_key_required: true, api_keys: ['k'], rate_limit: noLimits },
    });
    const reflection = createReflectionClient(`127.0.0.1:${s.port}`);
    try {
      const health = await s.client().health.check({ service: '' });
      assert.equal(health.status, ServingStatus.SERVING);
      const services = await reflection.listServices();
      assert.ok(services.includes(Synthesis.typeName));
      assert.equal(await rejectedCount(s.metrics, 'unauthenticated'), 0);
    } finally {
      reflection.close();
      await s.stop();
    }
  });

  it('exempts exactly the configured services and method paths', async () => {
    const s = await startSecured({
      security: {
        api_key_required: true,
        api_keys: ['k'],
        exempt_methods: ['/cortex.voice.v1.Synthesis/ListVoices'],
        rate_limit: noLimits,
      },
    });
    try {
      await s.client().synthesis.listVoices({});
      const other = await expectError(s.client().synthesis.synthesizeText({})[Symbol.asyncIterator]().next());
      assert.equal(other.code, Code.Unauthenticated);
      const health = await expectError(s.client().health.check({ service: '' }));
      assert.equal(health.code, Code.Unauthenticated, 'health is no longer exempt once the list is replaced');
    } finally {
      await s.stop();
    }
  });

  it('redacts x-api-key wherever a log record carries metadata or headers', () => {
    const logs = captureLogs();
    const logger = createLogger(
      { level: 'info', format: 'json', output: 'stdout' },
      { destination: logs.stream },
    );
    logger.info(
      { metadata: { 'x-api-key': 'meta-secret' }, headers: { 'x-api-key': 'header-secret' } },
      'call',
    );
    const text = logs.text();
    assert.ok(!text.includes('meta-secret') && !text.includes('header-secret'), text);
    assert.match(text, /"x-api-key":"<redacted>"/);
  });

  it('takes keys from API_KEY, comma-separated, and turns the requirement on', async () => {
    const s = await startSecured({ security: { rate_limit: noLimits } }, { API_KEY: 'env-a, env-b' });
    try {
      assert.equal((await expectError(s.client().synthesis.listVoices({}))).code, Code.Unauthenticated);
      await s.client({ apiKey: 'env-a' }).synthesis.listVoices({});
      await s.client({ apiKey: 'env-b' }).synthesis.listVoices({});
    } finally {
      await s.stop();
    }
  });
});

describe('allowed addresses', () => {
  it('admits 127.0.0.1 when its range is allowed and refuses it otherwise, health excepted', async () => {
    const allowed = await startSecured({ security: { allowed_ips: ['10.0.0.0/8', '127.0.0.0/8'] } });
    try {
      await allowed.client().synthesis.listVoices({});
    } finally {
      await allowed.stop();
    }
    const denied = await startSecured({ security: { allowed_ips: ['10.0.0.0/8', 'fd00::/8'] } });
    try {
      const error = await expectError(denied.client().synthesis.listVoices({}));
      assert.equal(error.code, Code.PermissionDenied);
      assert.match(error.rawMessage, /client address 127\.0\.0\.1 is not in security\.allowed_ips/);
      assert.equal(errorReasonOf(error), 'PERMISSION_DENIED');
      await denied.client().health.check({ service: '' });
      assert.equal(denied.seen.calls, 0);
      assert.equal(await rejectedCount(denied.metrics, 'permission_denied'), 1);
    } finally {
      await denied.stop();
    }
  });

  it('matches IPv6 clients, and IPv4 clients of a dual-stack socket by their IPv4 address', async () => {
    const v6 = await startSecured({
      service: { host: '::1' },
      security: { allowed_ips: ['::1/128'] },
    });
    try {
      await v6.client({ host: '::1' }).synthesis.listVoices({});
    } finally {
      await v6.stop();
    }
    const v4only = await startSecured({
      service: { host: '::1' },
      security: { allowed_ips: ['127.0.0.0/8'] },
    });
    try {
      const error = await expectError(v4only.client({ host: '::1' }).synthesis.listVoices({}));
      assert.equal(error.code, Code.PermissionDenied);
      assert.match(error.rawMessage, /client address ::1 /);
    } finally {
      await v4only.stop();
    }
    // On a socket bound to "::", an IPv4 client shows up as ::ffff:127.0.0.1.
    const dual = await startSecured({ service: { host: '::' }, security: { allowed_ips: ['127.0.0.1'] } });
    try {
      await dual.client({ host: '127.0.0.1' }).synthesis.listVoices({});
    } finally {
      await dual.stop();
    }
  });

  it('believes x-forwarded-for only from a trusted proxy, taking the rightmost untrusted hop', async () => {
    const call = (s: Secured, forwardedFor: string) =>
      s
        .client()
        .synthesis.listVoices({}, { headers: { 'x-forwarded-for': forwardedFor } })
        .then(
          () => 'admitted',
          (error: unknown) => ConnectError.from(error).rawMessage,
        );
    const behindProxy = await startSecured({
      security: { allowed_ips: ['10.0.0.0/8'], trusted_proxies: ['127.0.0.1/32', '192.168.0.0/16'] },
    });
    try {
      assert.equal(await call(behindProxy, '10.1.2.3'), 'admitted');
      assert.equal(
        await call(behindProxy, '198.51.100.7, 10.1.2.3'),
        'admitted',
        'a spoofed left hop is ignored',
      );
      assert.equal(await call(behindProxy, '10.1.2.3, 192.168.4.4'), 'admitted', 'trusted hops are skipped');
      const logged = behindProxy.logs.records().filter((record) => record.msg === 'call finished');
      assert.equal(logged.at(-1)?.client, '10.1.2.3', 'the call log names the resolved client');
      assert.match(String(logged.at(-1)?.peer), /127\.0\.0\.1/, 'and the direct peer');
      assert.match(
        await call(behindProxy, '10.1.2.3, 198.51.100.7'),
        /client address 198\.51\.100\.7 is not/,
      );
      assert.match(await call(behindProxy, '198.51.100.7'), /client address 198\.51\.100\.7 is not/);
      assert.match(await call(behindProxy, 'not-an-address'), /client address \(unknown\) is not/);
    } finally {
      await behindProxy.stop();
    }
    const direct = await startSecured({ security: { allowed_ips: ['10.0.0.0/8'] } });
    try {
      assert.match(await call(direct, '10.1.2.3'), /client address 127\.0\.0\.1 is not/);
    } finally {
      await direct.stop();
    }
  });
});

describe('rate and stream limits', () => {
  it('refuses the call past max_requests_per_minute with a retry trailer and RetryInfo, per key', async () => {
    const s = await startSecured({
      security: {
        api_key_required: true,
        api_keys: ['key-a', 'key-b'],
        rate_limit: { max_requests_per_minute: 3 },
      },
    });
    try {
      const a = s.client({ apiKey: 'key-a' });
      for (let index = 0; index < 3; index += 1) await a.synthesis.listVoices({});
      const limited = await expectError(a.synthesis.listVoices({}));
      assert.equal(limited.code, Code.ResourceExhausted);
      assert.match(
        limited.rawMessage,
        /the API key "unnamed-[0-9a-f]{8}" has used its 3 calls a minute \(security\.rate_limit\.max_requests_per_minute\); retry in 20 s/,
      );
      assert.equal(errorReasonOf(limited), 'RATE_LIMITED');
      const pushback = Number(limited.metadata.get('grpc-retry-pushback-ms'));
      assert.ok(pushback > 19_000 && pushback <= 20_000, `pushback ${pushback} ms`);
      assert.deepEqual(
        limited.details.map((detail) => (detail as { type: string }).type),
        ['google.rpc.ErrorInfo', 'google.rpc.RetryInfo'],
      );
      const detail = limited.details[1] as { type: string; value: Uint8Array };
      const delay = decodeRetryInfo(detail.value);
      assert.equal(delay.seconds * 1000 + delay.nanos / 1e6, pushback);

      await s.client({ apiKey: 'key-b' }).synthesis.listVoices({});
      await s.client().health.check({ service: '' });
      assert.equal(s.seen.calls, 4);
      assert.equal(await rejectedCount(s.metrics, 'rate_limited'), 1);
      assert.ok(!s.logs.text().includes('key-a'));
    } finally {
      await s.stop();
    }
  });

  it('limits callers without a key by their address', async () => {
    const s = await startSecured({ security: { rate_limit: { max_requests_per_minute: 2 } } });
    try {
      await s.client().synthesis.listVoices({});
      await s.client().synthesis.listVoices({});
      const limited = await expectError(s.client().synthesis.listVoices({}));
      assert.equal(limited.code, Code.ResourceExhausted);
      assert.match(limited.rawMessage, /the client address 127\.0\.0\.1 has used its 2 calls a minute/);
    } finally {
      await s.stop();
    }
  });

  it('caps the streams one key keeps open, and frees a slot when a stream ends', async () => {
    const s = await startSecured({
      security: {
        api_key_required: true,
        api_keys: ['key-a', 'key-b'],
        rate_limit: { max_concurrent_streams: 2 },
      },
    });
    const open = (client: VoiceClient) => {
      const input = new AbortController();
      async function* requests() {
        yield { request: { case: 'flush' as const, value: {} } };
        await sleep(60_000, undefined, { signal: input.signal }).catch(() => {});
      }
      const responses = client.synthesis.synthesize(requests())[Symbol.asyncIterator]();
      return { first: responses.next(), end: () => input.abort(), responses };
    };
    const streams: Array<ReturnType<typeof open>> = [];
    try {
      const a = s.client({ apiKey: 'key-a' });
      streams.push(open(a), open(a));
      for (const stream of streams) assert.equal((await stream.first).done, false);

      const third = open(a);
      streams.push(third);
      const refused = await expectError(third.first);
      assert.equal(refused.code, Code.ResourceExhausted);
      assert.match(
        refused.rawMessage,
        /the API key "unnamed-[0-9a-f]{8}" already has 2 streams open \(security\.rate_limit\.max_concurrent_streams\)/,
      );
      assert.equal(refused.metadata.get('grpc-retry-pushback-ms'), '1000');
      assert.deepEqual(
        refused.details.map((detail) => (detail as { type: string }).type),
        ['google.rpc.ErrorInfo', 'google.rpc.RetryInfo'],
      );

      const b = open(s.client({ apiKey: 'key-b' }));
      streams.push(b);
      assert.equal((await b.first).done, false, 'another key has its own streams');
      await a.synthesis.listVoices({});

      streams[0]?.end();
      assert.equal((await streams[0]?.responses.next())?.done, true);
      await sleep(50);
      const again = open(a);
      streams.push(again);
      assert.equal((await again.first).done, false, 'an ended stream frees its slot');
      assert.equal(await rejectedCount(s.metrics, 'stream_limit'), 1);
    } finally {
      for (const stream of streams) stream.end();
      await s.stop();
    }
  });

  it('ends a stream at service.max_stream_duration_seconds', async () => {
    const s = await startSecured({ service: { max_stream_duration_seconds: 1 } });
    const input = new AbortController();
    try {
      async function* requests() {
        yield { request: { case: 'flush' as const, value: {} } };
        await sleep(60_000, undefined, { signal: input.signal }).catch(() => {});
      }
      const startedAt = Date.now();
      const error = await expectError(
        (async () => {
          for await (const _ of s.client().synthesis.synthesize(requests()));
        })(),
      );
      assert.equal(error.code, Code.ResourceExhausted);
      assert.match(error.rawMessage, /the stream reached service\.max_stream_duration_seconds \(1 s\)/);
      assert.deepEqual(errorInfoOf(error)?.metadata, { limit: 'service.max_stream_duration_seconds' });
      const elapsed = Date.now() - startedAt;
      assert.ok(elapsed >= 900 && elapsed < 5000, `ended after ${elapsed} ms`);
    } finally {
      input.abort();
      await s.stop();
    }
  });
});

describe('limit building blocks', () => {
  it('refills a token bucket continuously and forgets full buckets', () => {
    let now = 0;
    const limiter = createRateLimiter(() => now);
    for (let index = 0; index < 60; index += 1) assert.equal(limiter.take('a', 60).allowed, true);
    const refused = limiter.take('a', 60);
    assert.equal(refused.allowed, false);
    assert.equal(refused.allowed ? 0 : refused.retryAfterMs, 1000);
    now += 500;
    const half = limiter.take('a', 60);
    assert.equal(half.allowed ? 0 : half.retryAfterMs, 500);
    now += 500;
    assert.equal(limiter.take('a', 60).allowed, true, 'one token a second at 60 a minute');
    assert.equal(limiter.take('b', 60).allowed, true, 'buckets are per identity');
    now += 120_000;
    limiter.take('c', 60);
    assert.equal(limiter.size, 1, 'refilled buckets are dropped');
  });

  it('gives each identity a bucket of its own size, which a charge may overdraw', () => {
    let now = 0;
    const limiter = createRateLimiter(() => now);
    assert.equal(limiter.take('small', 1).allowed, true);
    assert.equal(limiter.take('small', 1).allowed, false);
    assert.equal(limiter.take('large', 600).allowed, true);
    limiter.charge('audio', 60, 90);
    const spent = limiter.check('audio', 60, 1);
    assert.equal(spent.allowed ? 0 : spent.retryAfterMs, 31_000, 'from -30 back to 1 at one a second');
    now += 31_000;
    assert.equal(limiter.check('audio', 60, 1).allowed, true);
  });

  it('counts streams in and out once each', () => {
    const counter = createStreamCounter();
    const release = counter.acquire('a', 1);
    assert.ok(release);
    assert.equal(counter.acquire('a', 1), undefined);
    release();
    release();
    assert.equal(counter.open('a'), 0);
    assert.ok(counter.acquire('a', 1));
    assert.equal(counter.open('a'), 1);
    assert.ok(counter.acquire('a', 2), 'the cap comes with each acquire');
  });

  it('resolves the client address from trusted proxies only, IPv4-mapped addresses included', () => {
    const trusted = createAddressRanges(['10.0.0.0/8', '::ffff:192.168.0.0/112']);
    assert.equal(clientAddress('::ffff:10.0.0.1', ['203.0.113.9'], trusted), '203.0.113.9');
    assert.equal(clientAddress('192.168.1.1', ['[2001:db8::1]:443, 10.2.2.2'], trusted), '2001:db8::1');
    assert.equal(clientAddress('203.0.113.1', ['10.9.9.9'], trusted), '203.0.113.1');
    assert.equal(clientAddress('10.0.0.1', ['10.3.3.3', '10.4.4.4'], trusted), '10.3.3.3');
    assert.equal(clientAddress('10.0.0.1', [], trusted), '10.0.0.1');
    assert.equal(clientAddress(undefined, ['10.3.3.3'], trusted), undefined);
  });

  it('encodes a google.rpc.Status with ErrorInfo and RetryInfo that a hand-written decoder reads', () => {
    const bytes = statusDetails({
      code: 8,
      message: 'slow down',
      reason: Reason.RateLimited,
      info: { limit: 'security.rate_limit.max_requests_per_minute' },
      retryAfterMs: 20_500,
    });
    const reader = new BinaryReader(bytes);
    let code = 0;
    let message = '';
    const details: Array<{ typeUrl: string; value: Uint8Array }> = [];
    while (reader.pos < reader.len) {
      const [field] = reader.tag();
      if (field === 1) code = reader.int32();
      else if (field === 2) message = reader.string();
      else if (field === 3) {
        const any = new BinaryReader(reader.bytes());
        const entry: { typeUrl: string; value: Uint8Array } = { typeUrl: '', value: new Uint8Array() };
        while (any.pos < any.len) {
          const [anyField] = any.tag();
          if (anyField === 1) entry.typeUrl = any.string();
          else entry.value = any.bytes();
        }
        details.push(entry);
      } else assert.fail(`unexpected field ${field}`);
    }
    assert.equal(code, 8);
    assert.equal(message, 'slow down');
    assert.deepEqual(
      details.map((detail) => detail.typeUrl),
      ['type.googleapis.com/google.rpc.ErrorInfo', 'type.googleapis.com/google.rpc.RetryInfo'],
    );
    const info = Buffer.from(details[0]?.value ?? new Uint8Array()).toString('latin1');
    for (const text of ['RATE_LIMITED', ERROR_DOMAIN, 'security.rate_limit.max_requests_per_minute']) {
      assert.ok(info.includes(text), `ErrorInfo holds ${text}`);
    }
    assert.deepEqual(decodeRetryInfo(details[1]?.value ?? new Uint8Array()), {
      seconds: 20,
      nanos: 500_000_000,
    });
  });
});

describe('security config', () => {
  const failureOf = (sections: Record<string, unknown>): string => {
    try {
      testConfig(sections);
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      assert.doesNotMatch(error.message, /\n/);
      return error.message;
    }
    assert.fail('the config was accepted');
  };

  it('stops on an invalid CIDR, naming the key and the value', () => {
    assert.match(
      failureOf({ security: { allowed_ips: ['10.0.0.0/8', '10.0.0.300/8'] } }),
      /^config: security\.allowed_ips\.1 = "10\.0\.0\.300\/8" \(in .*\) is invalid; expected a CIDR range such as 10\.0\.0\.0\/8 or fd00::\/8$/,
    );
    assert.match(
      failureOf({ security: { trusted_proxies: ['::1/129'] } }),
      /security\.trusted_proxies\.0 = "::1\/129"/,
    );
    assert.match(failureOf({ security: { allowed_ips: ['10.0.0.0/8/8'] } }), /security\.allowed_ips\.0/);
    assert.match(
      failureOf({ security: { exempt_methods: ['not a method'] } }),
      /security\.exempt_methods\.0/,
    );
    const accepted = testConfig({
      security: { allowed_ips: ['192.0.2.1', '2001:db8::/32', '::ffff:10.0.0.0/104'] },
    });
    assert.equal(accepted.security.allowed_ips.length, 3);
  });

  it('stops on an unreadable API keys file', () => {
    assert.match(
      failureOf({ security: { api_keys_file: '/nonexistent/keys.txt' } }),
      /^config: security\.api_keys_file = "\/nonexistent\/keys\.txt" cannot be read: ENOENT$/,
    );
  });

  it('refuses to start with keys required and an empty keys file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'voice-keys-'));
    const keysFile = join(dir, 'keys.txt');
    writeFileSync(keysFile, '# no keys yet\n');
    await assert.rejects(
      startSecured({ security: { api_key_required: true, api_keys_file: keysFile } }),
      (error: unknown) =>
        error instanceof ConfigError && /api_keys_file = ".*keys\.txt" holds no key$/.test(error.message),
    );
  });
});

/** google.rpc.RetryInfo { Duration retry_delay = 1 } → Duration { int64 seconds = 1; int32 nanos = 2 }. */
function decodeRetryInfo(bytes: Uint8Array): { seconds: number; nanos: number } {
  const reader = new BinaryReader(bytes);
  const result = { seconds: 0, nanos: 0 };
  while (reader.pos < reader.len) {
    const [field] = reader.tag();
    assert.equal(field, 1, 'RetryInfo has only retry_delay');
    const duration = new BinaryReader(reader.bytes());
    while (duration.pos < duration.len) {
      const [durationField] = duration.tag();
      if (durationField === 1) result.seconds = Number(duration.int64());
      else result.nanos = duration.int32();
    }
  }
  return result;
}
