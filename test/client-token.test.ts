import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { create } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { pino } from 'pino';
import {
  CLIENT_TOKEN_LEEWAY_SECONDS,
  createClientTokens,
  generateClientTokenSecret,
  MAX_CLIENT_TOKEN_TTL_SECONDS,
  VOICE_SERVICES,
} from '../server/edge/client-token.js';
import { Reason, VoiceError } from '../server/errors.js';
import {
  Access,
  CreateClientTokenRequestSchema,
  CreateClientTokenResponseSchema,
} from '../server/gen/cortex/voice/v1/access_pb.js';
import { Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from '../server/gen/cortex/voice/v1/transcription_pb.js';
import { createAccessService } from '../server/service/access.js';
import type { CallContext, Caller } from '../server/service/context.js';
import { captureLogs } from './helpers/log-capture.js';

const SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';
const OTHER_SECRET = 'another-secret-0123456789-abcdefghijklmnopqrstuv';
const START = Date.UTC(2026, 11, 1, 12, 0, 0);
const KEY_CALLER: Caller = { id: 'key:0123456789abcdef', via: 'api-key', name: 'backend' };

const path = (service: { typeName: string }, method: string) => `/${service.typeName}/${method}`;
const SYNTHESIZE_TEXT = path(Synthesis, 'SynthesizeText');
const LIST_VOICES = path(Synthesis, 'ListVoices');
const TRANSCRIBE = path(Transcription, 'Transcribe');
const MINT = path(Access, 'CreateClientToken');

/** A clock the test moves by hand, in milliseconds. */
function manualClock(start = START) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

function tokens(options: { secret?: string; ttlSeconds?: number; now?: () => number } = {}) {
  return createClientTokens({ secret: SECRET, ttlSeconds: 300, now: () => START, ...options });
}

/** Every error message seen by the refusal helpers, to prove none carries the secret. */
const messages: string[] = [];

/** Runs `action`, which must throw a VoiceError with `reason` and a message matching `pattern`. */
function refusal(action: () => unknown, reason: Reason, pattern: RegExp): VoiceError {
  try {
    action();
  } catch (error) {
    return checkRefusal(error, reason, pattern);
  }
  assert.fail('no error was thrown');
}

async function rejection(
  action: () => Promise<unknown>,
  reason: Reason,
  pattern: RegExp,
): Promise<VoiceError> {
  try {
    await action();
  } catch (error) {
    return checkRefusal(error, reason, pattern);
  }
  assert.fail('the call succeeded');
}

const codeOf: Partial<Record<Reason, Code>> = {
  [Reason.Unauthenticated]: Code.Unauthenticated,
  [Reason.PermissionDenied]: Code.PermissionDenied,
  [Reason.InvalidArgument]: Code.InvalidArgument,
};

function checkRefusal(error: unknown, reason: Reason, pattern: RegExp): VoiceError {
  assert.ok(error instanceof VoiceError, `expected a VoiceError, got ${inspect(error)}`);
  messages.push(error.rawMessage);
  assert.equal(error.reason, reason, error.rawMessage);
  assert.equal(error.code, codeOf[reason]);
  assert.match(error.rawMessage, pattern);
  return error;
}

function rangeError(action: () => unknown, pattern: RegExp): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof RangeError, `expected a RangeError, got ${inspect(error)}`);
    messages.push(error.message);
    assert.match(error.message, pattern);
    return true;
  });
}

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8').toString('base64url');
const hs256 = (secret: string, input: string) =>
  createHmac('sha256', secret).update(input).digest().toString('base64url');

function partsOf(token: string) {
  const [header = '', payload = '', signature = ''] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>,
    signature,
  };
}

/** A token built by hand from header and claims, signed with `secret` (or given a signature). */
function handMade(header: unknown, claims: unknown, signWith: string | { signature: string } = SECRET) {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${typeof signWith === 'string' ? hs256(signWith, input) : signWith.signature}`;
}

/** A genuine token's claims, for re-signing variants of them. */
function genuineClaims(): Record<string, unknown> {
  return partsOf(tokens().mint({ caller: KEY_CALLER }).token).claims;
}

describe('client tokens', () => {
  it('round-trips: a minted token verifies as the minting key, via client-token, on every voice RPC', () => {
    const issuer = tokens();
    const minted = issuer.mint({ caller: KEY_CALLER });
    assert.equal(minted.expiresAt.getTime(), START + 300_000);
    assert.deepEqual(minted.scopes, [Transcription.typeName, Synthesis.typeName]);
    for (const service of VOICE_SERVICES) {
      for (const method of service.methods) {
        assert.deepEqual(issuer.verify(minted.token, path(service, method.name)), {
          id: KEY_CALLER.id,
          via: 'client-token',
        });
      }
    }
  });

  it('is a standard HS256 JWT with subject, issued-at, expiry, token id, audience, issuer and scope', () => {
    const minted = tokens().mint({ caller: KEY_CALLER, ttlSeconds: 120 });
    const { header, claims, signature } = partsOf(minted.token);
    assert.deepEqual(header, { alg: 'HS256', typ: 'JWT' });
    assert.deepEqual(claims, {
      iss: 'cortex-voice',
      aud: 'cortex.voice.v1',
      sub: KEY_CALLER.id,
      iat: START / 1000,
      exp: START / 1000 + 120,
      jti: minted.tokenId,
      scope: `${Transcription.typeName} ${Synthesis.typeName}`,
    });
    const [h, p] = minted.token.split('.');
    assert.equal(signature, hs256(SECRET, `${h}.${p}`), 'HMAC-SHA256 over header.payload (RFC 7515)');
    assert.match(minted.tokenId, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(tokens().mint({ caller: KEY_CALLER }).tokenId, minted.tokenId, 'a fresh id per token');
  });

  it('refuses an expired token with UNAUTHENTICATED naming when it expired, after a few seconds of leeway', () => {
    const clock = manualClock();
    const issuer = tokens({ now: clock.now, ttlSeconds: 60 });
    const { token } = issuer.mint({ caller: KEY_CALLER });
    clock.advance((60 + CLIENT_TOKEN_LEEWAY_SECONDS) * 1000);
    assert.equal(issuer.verify(token, SYNTHESIZE_TEXT).via, 'client-token', 'still inside the leeway');
    clock.advance(1);
    refusal(
      () => issuer.verify(token, SYNTHESIZE_TEXT),
      Reason.Unauthenticated,
      /^the client token expired at 2026-12-01T12:01:00\.000Z \(it is now 2026-12-01T12:01:05\.001Z\)/,
    );
  });

  it('refuses a token issued in the future beyond the leeway (another server with a fast clock)', () => {
    const ahead = tokens({ now: () => START + 60_000 }).mint({ caller: KEY_CALLER }).token;
    refusal(
      () => tokens().verify(ahead, SYNTHESIZE_TEXT),
      Reason.Unauthenticated,
      /issued at 2026-12-01T12:01:00\.000Z, in this server's future/,
    );
    const slightlyAhead = tokens({ now: () => START + 3000 }).mint({ caller: KEY_CALLER }).token;
    assert.equal(tokens().verify(slightlyAhead, SYNTHESIZE_TEXT).id, KEY_CALLER.id);
  });

  it('refuses forged signatures, tokens of another secret and tampered claims as not validly signed', () => {
    const issuer = tokens();
    const { token } = issuer.mint({ caller: KEY_CALLER });
    const [header, payload, signature = ''] = token.split('.');
    const notSigned = /^the client token's signature is not valid/;
    const forged = `${header}.${payload}.${hs256('guess', `${header}.${payload}`)}`;
    refusal(() => issuer.verify(forged, SYNTHESIZE_TEXT), Reason.Unauthenticated, notSigned);
    const foreign = createClientTokens({ secret: OTHER_SECRET, ttlSeconds: 300, now: () => START });
    refusal(
      () => issuer.verify(foreign.mint({ caller: KEY_CALLER }).token, SYNTHESIZE_TEXT),
      Reason.Unauthenticated,
      notSigned,
    );
    for (const change of [
      { sub: 'key:someone-else' },
      { exp: START / 1000 + 86_400 },
      { scope: Access.typeName },
    ]) {
      const tampered = `${header}.${b64({ ...genuineClaims(), ...change })}.${signature}`;
      refusal(() => issuer.verify(tampered, SYNTHESIZE_TEXT), Reason.Unauthenticated, notSigned);
    }
    const truncated = `${header}.${payload}.${signature.slice(0, -2)}`;
    refusal(() => issuer.verify(truncated, SYNTHESIZE_TEXT), Reason.Unauthenticated, notSigned);
    // The last of 43 base64url characters carries two padding bits: another spelling of the same bytes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const respelled = alphabet[alphabet.indexOf(signature.at(-1) ?? 'A') ^ 1];
    assert.deepEqual(
      Buffer.from(`${signature.slice(0, -1)}${respelled}`, 'base64url'),
      Buffer.from(signature, 'base64url'),
    );
    refusal(
      () => issuer.verify(`${header}.${payload}.${signature.slice(0, -1)}${respelled}`, SYNTHESIZE_TEXT),
      Reason.Unauthenticated,
      notSigned,
    );
  });

  it('refuses malformed strings with UNAUTHENTICATED saying the token is malformed', () => {
    const issuer = tokens();
    const { token } = issuer.mint({ caller: KEY_CALLER });
    const [header, payload, signature] = token.split('.');
    const malformed = [
      '',
      'abc',
      'a.b',
      `${token}.extra`,
      '..',
      `${header}..${signature}`,
      `.${payload}.${signature}`,
      `${header}.${payload}.sig+with/plain=base64`,
      `Bearer ${token}`,
      `${token} `,
      `${b64('not json')}.${payload}.${signature}`,
      `${b64([1, 2])}.${payload}.${signature}`,
      `${b64('null')}.${payload}.${signature}`,
      `${token}${'A'.repeat(5000)}`,
      42 as unknown as string,
      undefined as unknown as string,
    ];
    for (const candidate of malformed) {
      refusal(
        () => issuer.verify(candidate, SYNTHESIZE_TEXT),
        Reason.Unauthenticated,
        /^the client token is malformed/,
      );
    }
  });

  it('refuses well-signed tokens whose claims are missing, of the wrong type or for another audience', () => {
    const issuer = tokens();
    const header = { alg: 'HS256', typ: 'JWT' };
    const claims = genuineClaims();
    const { sub: _sub, ...withoutSubject } = claims;
    const cases: Array<[unknown, RegExp]> = [
      [withoutSubject, /malformed: its sub claim is missing/],
      [{ ...claims, exp: '2027-01-01' }, /malformed: its exp claim/],
      [{ ...claims, iat: 1.5 }, /malformed: its iat claim/],
      [{ ...claims, scope: ['a'] }, /malformed: its scope claim/],
      [{ ...claims, aud: 'someone-else' }, /was not issued by cortex-voice for cortex\.voice\.v1/],
      [{ ...claims, iss: 'someone-else' }, /was not issued by cortex-voice/],
      ['just a string', /malformed: its claim set is not base64url-encoded JSON/],
      [[1, 2], /malformed: its claim set is not a JSON object/],
    ];
    for (const [body, pattern] of cases) {
      refusal(() => issuer.verify(handMade(header, body), SYNTHESIZE_TEXT), Reason.Unauthenticated, pattern);
    }
    const listed = handMade(header, { ...claims, aud: ['other', 'cortex.voice.v1'] });
    assert.equal(issuer.verify(listed, SYNTHESIZE_TEXT).id, KEY_CALLER.id, 'an audience array that names us');
  });

  it('refuses algorithm confusion: "none", other algorithms and unknown critical headers', () => {
    const issuer = tokens();
    const claims = genuineClaims();
    const algorithm = /^the client token's algorithm .* is not accepted; client tokens are signed with HS256/;
    for (const alg of ['none', 'None', 'HS512', 'RS256', 'ES256']) {
      refusal(
        () => issuer.verify(handMade({ alg, typ: 'JWT' }, claims, { signature: '' }), SYNTHESIZE_TEXT),
        Reason.Unauthenticated,
        algorithm,
      );
      // Even with a correct HMAC over the input, the header's algorithm is not trusted.
      refusal(
        () => issuer.verify(handMade({ alg, typ: 'JWT' }, claims), SYNTHESIZE_TEXT),
        Reason.Unauthenticated,
        algorithm,
      );
    }
    refusal(
      () => issuer.verify(handMade({ typ: 'JWT' }, claims), SYNTHESIZE_TEXT),
      Reason.Unauthenticated,
      /^the client token's header names no algorithm; client tokens are signed with HS256/,
    );
    refusal(
      () => issuer.verify(handMade({ alg: 'HS256', crit: ['exp'], exp: 1 }, claims), SYNTHESIZE_TEXT),
      Reason.Unauthenticated,
      /malformed: its header names critical extensions/,
    );
    refusal(
      () => issuer.verify(handMade({ alg: 'HS256', typ: 'at+jwt' }, claims), SYNTHESIZE_TEXT),
      Reason.Unauthenticated,
      /malformed: its header typ is not "JWT"/,
    );
  });

  it('refuses a method outside the scopes with PERMISSION_DENIED naming the method and what is allowed', () => {
    const issuer = tokens();
    const synthesisOnly = issuer.mint({ caller: KEY_CALLER, scopes: [Synthesis.typeName] });
    assert.equal(issuer.verify(synthesisOnly.token, LIST_VOICES).id, KEY_CALLER.id);
    refusal(
      () => issuer.verify(synthesisOnly.token, TRANSCRIBE),
      Reason.PermissionDenied,
      /^the client token does not allow \/cortex\.voice\.v1\.Transcription\/Transcribe; it allows cortex\.voice\.v1\.Synthesis$/,
    );
    const oneMethod = issuer.mint({
      caller: KEY_CALLER,
      scopes: [` ${SYNTHESIZE_TEXT.slice(1)} `, SYNTHESIZE_TEXT, path(Transcription, 'TranscribeFile')],
    });
    assert.deepEqual(
      oneMethod.scopes,
      [SYNTHESIZE_TEXT, path(Transcription, 'TranscribeFile')],
      'canonical, once each',
    );
    assert.equal(issuer.verify(oneMethod.token, SYNTHESIZE_TEXT).id, KEY_CALLER.id);
    refusal(
      () => issuer.verify(oneMethod.token, LIST_VOICES),
      Reason.PermissionDenied,
      /does not allow \/cortex\.voice\.v1\.Synthesis\/ListVoices; it allows \/cortex\.voice\.v1\.Synthesis\/SynthesizeText, \/cortex\.voice\.v1\.Transcription\/TranscribeFile$/,
    );
    refusal(
      () => issuer.verify(oneMethod.token, '/grpc.health.v1.Health/Check'),
      Reason.PermissionDenied,
      /client tokens are only for the voice RPCs/,
    );
  });

  it('never lets a token call the minting RPC, nor mints a token scoped to it', () => {
    const issuer = tokens();
    const { token } = issuer.mint({ caller: KEY_CALLER });
    refusal(
      () => issuer.verify(token, MINT),
      Reason.PermissionDenied,
      /^the client token does not allow \/cortex\.voice\.v1\.Access\/CreateClientToken; it allows .*\(a client token cannot mint tokens: that needs an API key\)$/,
    );
    for (const scope of [Access.typeName, MINT]) {
      refusal(
        () => issuer.mint({ caller: KEY_CALLER, scopes: [Synthesis.typeName, scope] }),
        Reason.InvalidArgument,
        /^scopes\[1\]: ".*" is not a voice RPC; a client token cannot mint tokens$/,
      );
    }
    // Even a token that claims Access in its (validly signed) scope is refused.
    const claimsAccess = handMade(
      { alg: 'HS256', typ: 'JWT' },
      { ...genuineClaims(), scope: Access.typeName },
    );
    refusal(() => issuer.verify(claimsAccess, MINT), Reason.PermissionDenied, /cannot mint tokens/);
    assert.throws(() => issuer.mint({ caller: { id: KEY_CALLER.id, via: 'client-token' } }), RangeError);
  });

  it('refuses scopes that are not voice services or their methods with INVALID_ARGUMENT naming the entry', () => {
    const issuer = tokens();
    for (const scope of [
      'cortex.voice.v1.Nope',
      `${Synthesis.typeName}/Nope`,
      `${LIST_VOICES}/extra`,
      '',
      '/',
      '*',
    ]) {
      refusal(
        () => issuer.mint({ caller: KEY_CALLER, scopes: [scope] }),
        Reason.InvalidArgument,
        /^scopes\[0\]: ".*" is not a voice RPC; allowed are the services cortex\.voice\.v1\.Transcription, cortex\.voice\.v1\.Synthesis and their method paths/,
      );
    }
    refusal(
      () => issuer.mint({ caller: KEY_CALLER, scopes: Array(65).fill(Synthesis.typeName) }),
      Reason.InvalidArgument,
      /^scopes: 65 entries; at most 64/,
    );
  });

  it('bounds lifetimes: whole seconds from 1 to a day, per token or by default', () => {
    for (const ttlSeconds of [0, -1, 1.5, Number.NaN, MAX_CLIENT_TOKEN_TTL_SECONDS + 1]) {
      rangeError(
        () => tokens({ ttlSeconds }),
        /^ttlSeconds must be a whole number of seconds from 1 to 86400/,
      );
      rangeError(
        () => tokens().mint({ caller: KEY_CALLER, ttlSeconds }),
        /^mint ttlSeconds must be a whole number of seconds from 1 to 86400/,
      );
    }
    assert.equal(tokens().mint({ caller: KEY_CALLER, ttlSeconds: 1 }).expiresAt.getTime(), START + 1000);
    const longest = tokens({ ttlSeconds: MAX_CLIENT_TOKEN_TTL_SECONDS }).mint({ caller: KEY_CALLER });
    assert.equal(longest.expiresAt.getTime(), START + MAX_CLIENT_TOKEN_TTL_SECONDS * 1000);
  });

  it('needs a secret of at least 32 bytes, and never shows the secret in errors, logs or inspection', () => {
    const short = 'short-secret-of-31-bytes-123456';
    assert.equal(short.length, 31);
    rangeError(() => tokens({ secret: short }), /must be at least 32 bytes; the one given has 31/);
    rangeError(() => tokens({ secret: '' }), /the one given has 0/);
    assert.doesNotThrow(() => tokens({ secret: `${short}x` }));
    assert.doesNotThrow(() => tokens({ secret: 'é'.repeat(16) }), 'bytes of UTF-8, not characters');
    const generated = generateClientTokenSecret();
    assert.ok(Buffer.byteLength(generated) >= 32);
    assert.notEqual(generateClientTokenSecret(), generated);
    const minted = tokens({ secret: generated }).mint({ caller: KEY_CALLER });
    assert.equal(
      tokens({ secret: generated }).verify(minted.token, LIST_VOICES).id,
      KEY_CALLER.id,
      'same secret',
    );

    const issuer = tokens();
    assert.ok(!inspect(issuer, { depth: 10, showHidden: true }).includes(SECRET));
    assert.ok(!JSON.stringify(issuer).includes(SECRET));
    assert.ok(messages.length > 30, `the other tests collected ${messages.length} messages`);
    for (const message of messages) {
      for (const secret of [SECRET, OTHER_SECRET, short]) assert.ok(!message.includes(secret), message);
    }
  });
});

/** A fake call context for calling handlers directly: no transport, a logger that keeps its lines. */
function fakeContext(caller: Caller | undefined) {
  const logs = captureLogs();
  const ctx: CallContext = {
    signal: new AbortController().signal,
    deadline: undefined,
    metadata: new Map(),
    peer: 'ipv4:127.0.0.1:50000',
    requestId: 'fake-request',
    logger: pino({ level: 'info' }, logs.stream),
    caller,
  };
  return { ctx, logs };
}

describe('the Access service', () => {
  const issuer = tokens({ ttlSeconds: 300 });
  const service = createAccessService({ tokens: issuer, maxTtlSeconds: 900 });
  const request = (init: { ttlSeconds?: number; scopes?: string[] } = {}) =>
    create(CreateClientTokenRequestSchema, init);
  /** The handler's answer as the full message a client would decode. */
  const mint = async (...args: Parameters<typeof service.createClientToken>) =>
    create(CreateClientTokenResponseSchema, await service.createClientToken(...args));

  it('mints a token for an API-key caller that verifies as that key, with its expiry and scopes', async () => {
    const { ctx, logs } = fakeContext(KEY_CALLER);
    const response = await mint(request(), ctx);
    assert.ok(response.expireTime !== undefined);
    assert.equal(timestampMs(response.expireTime), START + 300_000);
    assert.deepEqual(response.scopes, [Transcription.typeName, Synthesis.typeName]);
    assert.deepEqual(issuer.verify(response.token, TRANSCRIBE), { id: KEY_CALLER.id, via: 'client-token' });
    const [record] = logs.records().filter((line) => line.msg === 'client token minted');
    assert.ok(record, logs.text());
    assert.equal(record.caller, 'backend', 'the key by its name, not its id');
    assert.equal(record.expiresAt, '2026-12-01T12:05:00.000Z');
    assert.equal(record.tokenId, partsOf(response.token).claims.jti);
    assert.ok(!logs.text().includes(response.token), 'the token is never logged');
    assert.ok(!logs.text().includes(SECRET), 'the secret is never logged');
  });

  it('honours ttl_seconds up to the configured maximum and scopes from the request', async () => {
    const { ctx } = fakeContext(KEY_CALLER);
    const response = await mint(request({ ttlSeconds: 900, scopes: [SYNTHESIZE_TEXT] }), ctx);
    assert.ok(response.expireTime !== undefined);
    assert.equal(timestampMs(response.expireTime), START + 900_000);
    assert.deepEqual(response.scopes, [SYNTHESIZE_TEXT]);
    refusal(() => issuer.verify(response.token, LIST_VOICES), Reason.PermissionDenied, /does not allow/);
    const byDefault = await mint(request({ ttlSeconds: 0 }), ctx);
    assert.ok(byDefault.expireTime !== undefined);
    assert.equal(timestampMs(byDefault.expireTime), START + 300_000, 'zero means the default lifetime');
    await rejection(
      () => service.createClientToken(request({ ttlSeconds: 901 }), ctx),
      Reason.InvalidArgument,
      /^ttl_seconds: 901 s is longer than the longest allowed, 900 s \(security\.client_tokens\.max_ttl_seconds\)$/,
    );
    await rejection(
      () => service.createClientToken(request({ scopes: [Access.typeName] }), ctx),
      Reason.InvalidArgument,
      /^scopes\[0\]: "cortex\.voice\.v1\.Access" is not a voice RPC/,
    );
  });

  it('refuses a call without an API key (UNAUTHENTICATED) and one with a client token (PERMISSION_DENIED)', async () => {
    await rejection(
      () => service.createClientToken(request(), fakeContext(undefined).ctx),
      Reason.Unauthenticated,
      /^CreateClientToken needs an API key in x-api-key metadata/,
    );
    const fromToken = fakeContext({ id: KEY_CALLER.id, via: 'client-token' });
    await rejection(
      () => service.createClientToken(request(), fromToken.ctx),
      Reason.PermissionDenied,
      /^a client token cannot mint client tokens/,
    );
    assert.deepEqual(fromToken.logs.records(), [], 'nothing minted');
  });

  it('refuses, at construction, a default lifetime longer than the maximum', () => {
    rangeError(
      () => createAccessService({ tokens: tokens({ ttlSeconds: 1000 }), maxTtlSeconds: 900 }),
      /ttl_seconds = 1000 is longer than security\.client_tokens\.max_ttl_seconds = 900/,
    );
    rangeError(() => createAccessService({ tokens: issuer, maxTtlSeconds: 0 }), /max_ttl_seconds/);
  });
});
