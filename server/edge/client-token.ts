import { createHmac, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import type { DescService } from '@bufbuild/protobuf';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import { Access } from '../gen/cortex/voice/v1/access_pb.js';
import { Synthesis } from '../gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from '../gen/cortex/voice/v1/transcription_pb.js';
import type { Caller } from '../service/context.js';

/**
 * Short-lived client tokens for callers that must not hold an API key (web pages). A token is a
 * JSON Web Token (RFC 7519) in JWS compact form (RFC 7515), signed with HMAC-SHA256 ("HS256"):
 *
 *   header  {"alg":"HS256","typ":"JWT"}
 *   claims  {"iss":"cortex-voice","aud":"cortex.voice.v1","sub":"<minting key's caller id>",
 *            "iat":<s>,"exp":<s>,"jti":"<random>","scope":"<service names and method paths>"}
 *
 * `scope` is space-separated, as in RFC 8693 §4.2. Only HS256 is accepted, whatever the header
 * says, so "none" and algorithm confusion are refused before anything else is looked at.
 */

/** The secret must carry at least as many bytes as the HMAC-SHA256 output (RFC 7518 §3.2). */
export const MIN_CLIENT_TOKEN_SECRET_BYTES = 32;
/** Longest lifetime a client token can have at all; configuration keeps it much shorter. */
export const MAX_CLIENT_TOKEN_TTL_SECONDS = 24 * 3600;
/** How far the clocks of the minting and the verifying server may differ. */
export const CLIENT_TOKEN_LEEWAY_SECONDS = 5;
/** The services a client token may be scoped to; never Access: a token cannot mint tokens. */
export const VOICE_SERVICES: readonly DescService[] = [Transcription, Synthesis];

const ISSUER = 'cortex-voice';
const AUDIENCE = 'cortex.voice.v1';
/** Far more than any token this module mints; longer input is refused before it is decoded. */
const MAX_TOKEN_CHARS = 4096;
const MAX_SCOPES = 64;
const HEADER = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
const BASE64URL = /^[A-Za-z0-9_-]*$/;

export interface ClientTokensOptions {
  /** security.client_tokens.secret (VOICE_TOKEN_SECRET): at least 32 bytes of UTF-8. Never logged. */
  readonly secret: string;
  /** Lifetime of a token when mint() is not given one (security.client_tokens.ttl_seconds). */
  readonly ttlSeconds: number;
  /** The clock, in milliseconds since the epoch (tests inject one). */
  readonly now?: () => number;
}

export interface MintRequest {
  /** The API-key caller the token acts for; its id becomes the token's subject and its quotas apply. */
  readonly caller: Caller;
  /** Service names or method paths, each of a voice service; empty or absent allows all voice RPCs. */
  readonly scopes?: readonly string[];
  /** Overrides the default lifetime. */
  readonly ttlSeconds?: number;
}

export interface MintedToken {
  /** The compact JWT, for `authorization: Bearer <token>`. A credential: never log it. */
  readonly token: string;
  readonly expiresAt: Date;
  /** The token's id (jti), fit for logs. */
  readonly tokenId: string;
  /** What the token may call, canonical: service names and "/service/Method" paths. */
  readonly scopes: readonly string[];
}

export interface ClientTokens {
  /** The default lifetime, in seconds. */
  readonly ttlSeconds: number;
  /**
   * Signs a token for an API-key caller. Scopes that are not voice RPCs are the client's mistake
   * (INVALID_ARGUMENT naming the entry); a bad lifetime or caller is a programming error (RangeError).
   */
  mint(request: MintRequest): MintedToken;
  /**
   * The caller behind a token, if the token is genuine, current and allows `methodPath`
   * ("/cortex.voice.v1.Synthesis/SynthesizeText"). Throws UNAUTHENTICATED for a malformed, forged,
   * foreign or expired token, PERMISSION_DENIED for a method outside its scopes; the message says why.
   */
  verify(token: string, methodPath: string): Caller;
}

/** A random secret for when none is configured: tokens then work only on this server process. */
export function generateClientTokenSecret(): string {
  return randomBytes(MIN_CLIENT_TOKEN_SECRET_BYTES).toString('base64url');
}

export function createClientTokens(options: ClientTokensOptions): ClientTokens {
  const { ttlSeconds } = options;
  const now = options.now ?? Date.now;
  const key = signingKey(options.secret);
  checkTtl(ttlSeconds, 'ttlSeconds');
  const sign = (input: string) => createHmac('sha256', key).update(input, 'ascii').digest();

  return {
    ttlSeconds,
    mint(request) {
      const { caller } = request;
      if (caller.via !== 'api-key' || typeof caller.id !== 'string' || caller.id === '') {
        throw new RangeError('client tokens are minted only for a caller authenticated by API key');
      }
      const lifetime = request.ttlSeconds ?? ttlSeconds;
      checkTtl(lifetime, 'mint ttlSeconds');
      const scopes = resolveScopes(request.scopes ?? []);
      const issuedAt = Math.floor(now() / 1000);
      const claims: TokenClaims = {
        iss: ISSUER,
        aud: AUDIENCE,
        sub: caller.id,
        iat: issuedAt,
        exp: issuedAt + lifetime,
        jti: randomBytes(16).toString('base64url'),
        scope: scopes.join(' '),
      };
      const signingInput = `${HEADER}.${base64url(JSON.stringify(claims))}`;
      return {
        token: `${signingInput}.${sign(signingInput).toString('base64url')}`,
        expiresAt: new Date(claims.exp * 1000),
        tokenId: claims.jti,
        scopes,
      };
    },

    verify(token, methodPath) {
      const parts = typeof token === 'string' && token.length <= MAX_TOKEN_CHARS ? token.split('.') : [];
      const [header, payload, signature] = parts;
      if (parts.length !== 3 || !header || !payload || !parts.every((part) => BASE64URL.test(part))) {
        throw malformed('it is not a JWT (three base64url parts separated by dots)');
      }
      checkHeader(decodeJson(header, 'header'));
      const given = Buffer.from(signature ?? '', 'base64url');
      const expected = sign(`${header}.${payload}`);
      const genuine =
        given.length === expected.length &&
        timingSafeEqual(given, expected) &&
        given.toString('base64url') === signature;
      if (!genuine) {
        throw unauthenticated(
          "the client token's signature is not valid: this server did not sign it, or it was changed since",
        );
      }
      const claims = readClaims(decodeJson(payload, 'claim set'));
      const nowMs = now();
      if (nowMs > (claims.exp + CLIENT_TOKEN_LEEWAY_SECONDS) * 1000) {
        throw unauthenticated(
          `the client token expired at ${isoTime(claims.exp)} (it is now ${new Date(nowMs).toISOString()}); fetch a fresh one`,
        );
      }
      if (claims.iat * 1000 > nowMs + CLIENT_TOKEN_LEEWAY_SECONDS * 1000) {
        throw unauthenticated(
          `the client token was issued at ${isoTime(claims.iat)}, in this server's future (it is now ${new Date(nowMs).toISOString()}): are the servers' clocks apart?`,
        );
      }
      const scopes = claims.scope.split(' ').filter((scope) => scope !== '');
      const service = methodPath.split('/')[1] ?? '';
      const isVoice = VOICE_SERVICES.some((voice) => voice.typeName === service);
      if (!isVoice || !(scopes.includes(service) || scopes.includes(methodPath))) {
        const why =
          service === Access.typeName
            ? ' (a client token cannot mint tokens: that needs an API key)'
            : isVoice
              ? ''
              : ' (client tokens are only for the voice RPCs)';
        throw new VoiceError(
          Reason.PermissionDenied,
          `the client token does not allow ${methodPath}; it allows ${scopes.join(', ') || 'nothing'}${why}`,
        );
      }
      return Object.freeze({ id: claims.sub, via: 'client-token' as const });
    },
  };
}

/**
 * Canonical scopes for what a client asked for: "cortex.voice.v1.Synthesis" for a whole service,
 * "/cortex.voice.v1.Synthesis/SynthesizeText" for one method (the leading slash is optional).
 * None asked for means every voice service. Throws INVALID_ARGUMENT naming the first bad entry.
 */
export function resolveScopes(requested: readonly string[]): readonly string[] {
  if (requested.length === 0) return VOICE_SERVICES.map((service) => service.typeName);
  if (requested.length > MAX_SCOPES) {
    throw invalidArgument('scopes', `${requested.length} entries; at most ${MAX_SCOPES} are allowed`);
  }
  const resolved = new Set<string>();
  for (const [index, entry] of requested.entries()) {
    const [serviceName = '', methodName, ...rest] = entry.trim().replace(/^\//, '').split('/');
    const service = VOICE_SERVICES.find((voice) => voice.typeName === serviceName);
    const method =
      methodName === undefined
        ? undefined
        : service?.methods.find((candidate) => candidate.name === methodName);
    if (service !== undefined && rest.length === 0 && (methodName === undefined || method !== undefined)) {
      resolved.add(method === undefined ? service.typeName : `/${service.typeName}/${method.name}`);
      continue;
    }
    const quoted = JSON.stringify(entry.length > 100 ? `${entry.slice(0, 100)}…` : entry);
    const why =
      serviceName === Access.typeName
        ? 'a client token cannot mint tokens'
        : `allowed are the services ${VOICE_SERVICES.map((voice) => voice.typeName).join(', ')} and their method paths, e.g. /${Synthesis.typeName}/${Synthesis.method.synthesizeText.name}`;
    throw invalidArgument(`scopes[${index}]`, `${quoted} is not a voice RPC; ${why}`);
  }
  return [...resolved];
}

interface TokenClaims {
  readonly iss: string;
  readonly aud: string;
  readonly sub: string;
  readonly iat: number;
  readonly exp: number;
  readonly jti: string;
  readonly scope: string;
}

function signingKey(secret: string): KeyObject {
  const bytes = typeof secret === 'string' ? Buffer.byteLength(secret, 'utf8') : 0;
  if (bytes < MIN_CLIENT_TOKEN_SECRET_BYTES) {
    // The length only: the secret itself never goes into a message.
    throw new RangeError(
      `the client token secret (security.client_tokens.secret, VOICE_TOKEN_SECRET) must be at least ${MIN_CLIENT_TOKEN_SECRET_BYTES} bytes; the one given has ${bytes}. Make one with: openssl rand -base64 32`,
    );
  }
  // A KeyObject does not show its bytes when logged or inspected.
  return createSecretKey(Buffer.from(secret, 'utf8'));
}

function checkTtl(seconds: number, name: string): void {
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_CLIENT_TOKEN_TTL_SECONDS) {
    throw new RangeError(
      `${name} must be a whole number of seconds from 1 to ${MAX_CLIENT_TOKEN_TTL_SECONDS}, not ${seconds}`,
    );
  }
}

function checkHeader(header: Record<string, unknown>): void {
  const { alg } = header;
  if (alg === undefined) {
    throw unauthenticated(
      "the client token's header names no algorithm; client tokens are signed with HS256",
    );
  }
  if (alg !== 'HS256') {
    const named = JSON.stringify(typeof alg === 'string' ? alg.slice(0, 40) : alg).slice(0, 60);
    throw unauthenticated(
      `the client token's algorithm ${named} is not accepted; client tokens are signed with HS256`,
    );
  }
  if (header.typ !== undefined && header.typ !== 'JWT') throw malformed('its header typ is not "JWT"');
  // RFC 7515 §4.1.11: extensions the recipient does not understand make the token invalid.
  if (header.crit !== undefined)
    throw malformed('its header names critical extensions this server does not know');
}

function readClaims(claims: Record<string, unknown>): TokenClaims {
  const { iss, aud, sub, iat, exp, jti, scope } = claims;
  const missing =
    typeof sub !== 'string' || sub === ''
      ? 'sub'
      : !Number.isSafeInteger(iat)
        ? 'iat'
        : !Number.isSafeInteger(exp)
          ? 'exp'
          : typeof jti !== 'string'
            ? 'jti'
            : typeof scope !== 'string'
              ? 'scope'
              : undefined;
  if (missing !== undefined) throw malformed(`its ${missing} claim is missing or of the wrong type`);
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (iss !== ISSUER || !audiences.includes(AUDIENCE)) {
    throw unauthenticated(`the client token was not issued by ${ISSUER} for ${AUDIENCE}`);
  }
  return { iss, aud: AUDIENCE, sub, iat, exp, jti, scope } as TokenClaims;
}

function decodeJson(part: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw malformed(`its ${what} is not base64url-encoded JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw malformed(`its ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

function isoTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? String(seconds) : date.toISOString();
}

function unauthenticated(message: string): VoiceError {
  return new VoiceError(Reason.Unauthenticated, message);
}

function malformed(why: string): VoiceError {
  return unauthenticated(`the client token is malformed: ${why}`);
}
