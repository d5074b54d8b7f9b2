import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { anyUnpack } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { createAccessControl } from '../server/edge/access-control.js';
import { createApiKeys } from '../server/edge/api-keys.js';
import { createClientTokens } from '../server/edge/client-token.js';
import { createEdge, type IncomingCall } from '../server/edge/edge.js';
import {
  errorMetadata,
  reasonOfStatusDetails,
  retryInfo,
  statusDetails,
} from '../server/edge/wire-status.js';
import { ERROR_DOMAIN, invalidArgument, Reason, toStatus, VoiceError } from '../server/errors.js';
import { ErrorInfoSchema, RetryInfoSchema } from '../server/gen/google/rpc/error_details_pb.js';
import { StatusSchema } from '../server/gen/google/rpc/status_pb.js';
import { createLogger } from '../server/observability/logger.js';
import { createMetrics } from '../server/observability/metrics.js';
import { captureLogs } from './helpers/log-capture.js';
import { testConfig } from './helpers/test-server.js';

/**
 * The transport-neutral edge on its own: the error type the transports send, credentials (API
 * keys and client tokens), and the books of a call. The transports' use of it is tested over real
 * connections in web-transport.test.ts, security.test.ts and transport.test.ts.
 */
const SECRET = 'edge-test-secret-0123456789-abcdefghijklmnopqrstu';
const SYNTHESIZE_TEXT = '/cortex.voice.v1.Synthesis/SynthesizeText';

describe('VoiceError', () => {
  it('is a real ConnectError: instanceof holds and ConnectError.from keeps its code', () => {
    const error = new VoiceError(Reason.UnknownResource, 'config.voice: unknown voice "x"');
    assert.ok(error instanceof ConnectError);
    assert.equal(ConnectError.from(error), error);
    assert.equal(ConnectError.from(error).code, Code.InvalidArgument);
    assert.equal(error.name, 'ConnectError', 'the name connect-es checks for subclasses');
    assert.ok(error instanceof VoiceError);
    assert.equal(error.reason, Reason.UnknownResource);
    assert.equal(error.rawMessage, 'config.voice: unknown voice "x"');
  });

  it('is not what any other ConnectError is', () => {
    assert.ok(!(new ConnectError('plain', Code.Internal) instanceof VoiceError));
    assert.ok(!(new Error('plain') instanceof VoiceError));
  });

  it('maps a transport ConnectError to its code with a catalogue reason, anything else to INTERNAL', () => {
    const tooLarge = toStatus(
      new ConnectError('message is larger than configured readMaxBytes', Code.ResourceExhausted),
    );
    assert.deepEqual(
      { code: tooLarge.code, reason: tooLarge.reason, unexpected: tooLarge.unexpected },
      { code: Code.ResourceExhausted, reason: Reason.LimitExceeded, unexpected: false },
    );
    const unknown = toStatus(new ConnectError('boom', Code.Unknown));
    assert.deepEqual(
      { code: unknown.code, message: unknown.message, unexpected: unknown.unexpected },
      { code: Code.Internal, message: 'internal error', unexpected: true },
    );
  });

  it('puts only the retry pushback in the error metadata, and RetryInfo in whole milliseconds', () => {
    assert.deepEqual(errorMetadata({ retryAfterMs: 1234.2 }), [['grpc-retry-pushback-ms', '1235']]);
    assert.deepEqual(errorMetadata({ retryAfterMs: undefined }), []);
    // RetryInfo { retry_delay: Duration { seconds: 1, nanos: 235000000 } }, as encoded by hand before.
    assert.deepEqual(
      [...toBinary(RetryInfoSchema, retryInfo(1234.2))],
      [0x0a, 0x07, 0x08, 0x01, 0x10, 0xc0, 0xa1, 0x87, 0x70],
    );
  });

  it('serializes a google.rpc.Status with ErrorInfo (reason, domain, info) first, then RetryInfo', () => {
    const status = toStatus(
      new VoiceError(Reason.Overloaded, 'queue full', {
        retryAfterMs: 1500,
        info: { limit: 'performance.max_queue_size' },
      }),
    );
    const decoded = fromBinary(StatusSchema, statusDetails(status));
    assert.equal(decoded.code, Code.ResourceExhausted);
    assert.equal(decoded.message, 'queue full');
    assert.equal(decoded.details.length, 2);
    const [first, second] = decoded.details;
    assert.ok(first && second);
    const info = anyUnpack(first, ErrorInfoSchema);
    assert.deepEqual(
      { reason: info?.reason, domain: info?.domain, metadata: info?.metadata },
      { reason: 'OVERLOADED', domain: ERROR_DOMAIN, metadata: { limit: 'performance.max_queue_size' } },
    );
    const retry = anyUnpack(second, RetryInfoSchema);
    assert.deepEqual(retry?.retryDelay, { $typeName: 'google.protobuf.Duration', seconds: 1n, nanos: 5e8 });
    assert.equal(reasonOfStatusDetails(statusDetails(status)), 'OVERLOADED');
    assert.equal(reasonOfStatusDetails(new Uint8Array([0xff, 0xff])), undefined);
  });

  it('gives an unexpected error ErrorInfo INTERNAL without its cause, and a field error its field', () => {
    const internal = toStatus(new Error('secret /path/to/model.onnx'));
    const decoded = fromBinary(StatusSchema, statusDetails(internal));
    assert.equal(decoded.details.length, 1);
    const info = decoded.details[0] && anyUnpack(decoded.details[0], ErrorInfoSchema);
    assert.equal(info?.reason, 'INTERNAL');
    assert.deepEqual(info?.metadata, {});
    assert.doesNotMatch(Buffer.from(statusDetails(internal)).toString('latin1'), /secret/);
    assert.deepEqual(toStatus(invalidArgument('config.speed', 'must be between 0.5 and 2.0')).info, {
      field: 'config.speed',
    });
  });
});

describe('access control', () => {
  const security = (overrides: Record<string, unknown> = {}) =>
    testConfig({ security: { api_key_required: true, api_keys: ['key-a'], ...overrides } }).security;
  const apiKeys = createApiKeys(['key-a']);
  const keyId = apiKeys.identify('key-a');
  let now = Date.UTC(2026, 11, 1, 12);
  const tokens = createClientTokens({ secret: SECRET, ttlSeconds: 300, now: () => now });
  const request = (metadata: Record<string, string>, path = SYNTHESIZE_TEXT) => ({
    path,
    streaming: true,
    metadata: new Map(Object.entries(metadata)),
    remoteAddress: '127.0.0.1',
    forwardedFor: [],
  });

  it('admits a client token in place of an API key, as the caller of the key that minted it', () => {
    const access = createAccessControl({ security: security(), apiKeys, tokens });
    assert.ok(keyId);
    const { token } = tokens.mint({ caller: { id: keyId, via: 'api-key' } });
    const verdict = access.admit(request({ authorization: `Bearer ${token}` }));
    assert.ok(!('refusal' in verdict), 'admitted');
    const name = apiKeys.account(keyId)?.name;
    assert.deepEqual(verdict.caller, { id: keyId, via: 'client-token', name });
    const byKey = access.admit(request({ 'x-api-key': 'key-a' }));
    assert.ok(!('refusal' in byKey));
    assert.deepEqual(byKey.caller, { id: keyId, via: 'api-key', name });
  });

  it('refuses expired, forged and out-of-scope tokens naming why, and a bearer token nobody verifies', () => {
    const access = createAccessControl({ security: security(), apiKeys, tokens });
    assert.ok(keyId);
    const scoped = tokens.mint({
      caller: { id: keyId, via: 'api-key' },
      scopes: ['/cortex.voice.v1.Synthesis/ListVoices'],
    });
    const outOfScope = access.admit(request({ authorization: `Bearer ${scoped.token}` }));
    assert.ok('refusal' in outOfScope);
    assert.equal(outOfScope.refusal.code, Code.PermissionDenied);
    assert.equal(outOfScope.metric, 'permission_denied');
    assert.match(
      outOfScope.refusal.rawMessage,
      /does not allow \/cortex\.voice\.v1\.Synthesis\/SynthesizeText/,
    );

    const forged = `${scoped.token.slice(0, -4)}AAAA`;
    const refusedForged = access.admit(request({ authorization: `Bearer ${forged}` }));
    assert.ok('refusal' in refusedForged);
    assert.equal(refusedForged.refusal.code, Code.Unauthenticated);
    assert.equal(refusedForged.metric, 'unauthenticated');

    const { token } = tokens.mint({ caller: { id: keyId, via: 'api-key' } });
    now += 3600_000;
    const expired = access.admit(request({ authorization: `bearer ${token}` }));
    assert.ok('refusal' in expired);
    assert.equal(expired.refusal.code, Code.Unauthenticated);
    assert.match(expired.refusal.rawMessage, /expired/);

    const unverified = createAccessControl({ security: security(), apiKeys }).admit(
      request({ authorization: `Bearer ${token}` }),
    );
    assert.ok('refusal' in unverified);
    assert.equal(unverified.refusal.code, Code.Unauthenticated);
  });

  it('names both credentials when none is sent, and prefers the API key when both are', () => {
    const access = createAccessControl({ security: security(), apiKeys, tokens });
    const none = access.admit(request({}));
    assert.ok('refusal' in none);
    assert.match(
      none.refusal.rawMessage,
      /^this call needs an API key in x-api-key metadata, or a client token as "authorization: Bearer <token>"$/,
    );
    const both = access.admit(request({ 'x-api-key': 'key-a', authorization: 'Bearer not-even-a-token' }));
    assert.ok(!('refusal' in both));
    assert.equal(both.caller?.via, 'api-key');
    const basic = access.admit(request({ authorization: 'Basic dXNlcjpwYXNz' }));
    assert.ok('refusal' in basic, 'another scheme is no credential');
    assert.match(basic.refusal.rawMessage, /needs an API key/);
  });

  it('counts a token against the limits of the key that minted it', () => {
    const access = createAccessControl({
      security: security({ rate_limit: { max_requests_per_minute: 2 } }),
      apiKeys,
      tokens,
    });
    assert.ok(keyId);
    const { token } = tokens.mint({ caller: { id: keyId, via: 'api-key' } });
    const unary = (metadata: Record<string, string>) =>
      access.admit({ ...request(metadata), streaming: false });
    assert.ok(!('refusal' in unary({ 'x-api-key': 'key-a' })));
    assert.ok(!('refusal' in unary({ authorization: `Bearer ${token}` })));
    const third = unary({ authorization: `Bearer ${token}` });
    assert.ok('refusal' in third);
    assert.equal(third.metric, 'rate_limited');
    assert.match(
      third.refusal.rawMessage,
      /^the API key "unnamed-[0-9a-f]{8}" behind this client token has used its 2 calls a minute/,
    );
    assert.ok(third.refusal.retryAfterMs !== undefined && third.refusal.retryAfterMs > 0);
  });
});

describe('edge calls', () => {
  const incoming = (overrides: Partial<IncomingCall> = {}): IncomingCall => ({
    protocol: 'connect',
    service: 'cortex.voice.v1.Synthesis',
    method: 'ListVoices',
    kind: 'unary',
    metadata: new Map(),
    forwardedFor: [],
    remoteAddress: '127.0.0.1',
    peer: 'ipv4:127.0.0.1:5000',
    deadline: undefined,
    ...overrides,
  });
  const edgeOf = (sections: Record<string, unknown> = {}) => {
    const logs = captureLogs();
    const config = testConfig(sections);
    const metrics = createMetrics();
    const edge = createEdge({
      config,
      logger: createLogger(config.logging, { destination: logs.stream }),
      metrics,
      tokens: createClientTokens({ secret: SECRET, ttlSeconds: 300 }),
    });
    return { edge, logs, metrics };
  };

  it('keeps a sane request id, makes one otherwise, and gives handlers metadata without credentials', () => {
    const { edge, logs } = edgeOf({ security: { api_keys: ['key-a'] } });
    const given = edge.open(
      incoming({
        metadata: new Map([
          ['x-request-id', 'abc-123'],
          ['x-api-key', 'key-a'],
          ['x-trace', 't'],
        ]),
      }),
    );
    assert.equal(given.requestId, 'abc-123');
    const ctx = given.context();
    assert.equal(ctx.metadata.get('x-trace'), 't');
    assert.equal(ctx.metadata.has('x-api-key'), false);
    assert.equal(ctx.caller?.via, 'api-key');
    given.end();
    const long = edge.open(
      incoming({
        metadata: new Map([
          ['x-request-id', 'x'.repeat(129)],
          ['x-api-key', 'key-a'],
        ]),
      }),
    );
    assert.match(long.requestId, /^[0-9a-f-]{36}$/);
    long.end();
    const record = logs.records().find((line) => line.requestId === 'abc-123');
    assert.equal(record?.protocol, 'connect');
    assert.equal(record?.code, 'OK');
    assert.match(String(record?.caller), /^unnamed-[0-9a-f]{8}$/, 'the derived name, not the id');
    assert.ok(!logs.text().includes('key-a'));
  });

  it('drains: refuses new calls but health, waits for calls in progress, tells them to finish, then cancels them', async () => {
    const { edge } = edgeOf();
    const running = edge.open(incoming());
    const ctx = running.context();
    let finishedFirst: boolean | undefined;
    ctx.finishSignal?.addEventListener('abort', () => {
      finishedFirst = !ctx.signal.aborted;
    });
    const drained = edge.drain(100, 100);
    const refused = edge.open(incoming());
    assert.equal(refused.refusal?.code, Code.Unavailable);
    assert.equal(refused.refusal?.reason, Reason.Draining);
    const health = edge.open(incoming({ service: 'grpc.health.v1.Health', method: 'Check' }));
    assert.equal(health.refusal, undefined, 'health is answered while draining');
    health.end();
    assert.equal(edge.activeCalls, 1);
    ctx.signal.addEventListener('abort', () => running.end(running.status(ctx.signal.reason)));
    await drained;
    assert.equal(finishedFirst, true, 'told to finish at the grace end, before it is cancelled');
    assert.equal((ctx.finishSignal!.reason as VoiceError).reason, Reason.Draining);
    assert.ok(ctx.signal.aborted);
    assert.equal((ctx.signal.reason as VoiceError).reason, Reason.Draining);
    assert.equal(edge.activeCalls, 0);
    assert.equal(edge.drain(100), drained, 'a second drain is the first');
  });

  it('lets the continuations of admitted calls through a drain and past the rate limit', async () => {
    const logs = captureLogs();
    const config = testConfig({ security: { rate_limit: { max_requests_per_minute: 1 } } });
    const append = '/cortex.voice.v1.Transcription/AppendSessionAudio';
    const edge = createEdge({
      config,
      logger: createLogger(config.logging, { destination: logs.stream }),
      metrics: createMetrics(),
      continuations: [append],
    });
    const chunk = () =>
      edge.open(incoming({ service: 'cortex.voice.v1.Transcription', method: 'AppendSessionAudio' }));
    const session = edge.open(
      incoming({
        service: 'cortex.voice.v1.Transcription',
        method: 'StartTranscriptionSession',
        kind: 'server_streaming',
      }),
    );
    assert.equal(session.refusal, undefined);
    session.context();
    for (let index = 0; index < 5; index += 1) {
      const call = chunk();
      assert.equal(call.refusal, undefined, 'chunks are not call starts');
      call.end();
    }
    assert.equal(edge.open(incoming()).refusal?.reason, Reason.RateLimited, 'other calls are');
    const drained = edge.drain(1000);
    const during = chunk();
    assert.equal(during.refusal, undefined, 'a drain lets the audio of an open session through');
    during.end();
    assert.equal(edge.open(incoming({ method: 'SynthesizeText' })).refusal?.reason, Reason.Draining);
    session.end();
    await drained;
  });

  it('ends a call once: the first report wins and quotas are released once', async () => {
    const { edge, metrics } = edgeOf({ security: { rate_limit: { max_concurrent_streams: 1 } } });
    const stream = edge.open(incoming({ kind: 'server_streaming', method: 'SynthesizeText' }));
    stream.context();
    const second = edge.open(incoming({ kind: 'server_streaming', method: 'SynthesizeText' }));
    assert.equal(second.refusal?.reason, Reason.RateLimited);
    stream.clientGone();
    stream.end({ code: 0 });
    const handled = await metrics.handled.get();
    const codes = handled.values
      .filter((value) => value.labels.grpc_method === 'SynthesizeText')
      .map((value) => `${value.labels.grpc_code}:${value.value}`);
    assert.deepEqual(codes.sort(), ['CANCELLED:1', 'RESOURCE_EXHAUSTED:1']);
    const third = edge.open(incoming({ kind: 'server_streaming', method: 'SynthesizeText' }));
    assert.equal(third.refusal, undefined, 'the ended stream freed its slot');
    third.end();
  });
});
