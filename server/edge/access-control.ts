import type { Config } from '../config.js';
import { Reason, VoiceError } from '../errors.js';
import type { Caller } from '../service/context.js';
import { type AddressRanges, clientAddress, createAddressRanges } from './addresses.js';
import { API_KEY_HEADER, type ApiKeys } from './api-keys.js';
import { createRateLimiter, createStreamCounter } from './rate-limiter.js';

/** Request metadata carrying a client token: `authorization: Bearer <token>`. */
export const AUTHORIZATION_HEADER = 'authorization';
/** When a client refused for having too many streams open may try again. */
export const STREAM_LIMIT_RETRY_MS = 1000;

/** What the edge needs of the client-token library (server/edge/client-token.ts). */
export interface TokenVerifier {
  /**
   * The caller behind a token if it is genuine, current and allows `methodPath`; throws a
   * VoiceError (UNAUTHENTICATED or PERMISSION_DENIED) saying why not.
   */
  verify(token: string, methodPath: string): Caller;
}

/** A call as access control sees it. */
export interface AccessRequest {
  /** "/package.Service/Method". */
  readonly path: string;
  readonly streaming: boolean;
  /** Request metadata, lower-case keys. */
  readonly metadata: ReadonlyMap<string, string>;
  /** The direct peer's address as the socket reports it. */
  readonly remoteAddress: string | undefined;
  /** Every x-forwarded-for value, in order. */
  readonly forwardedFor: readonly string[];
}

export interface Admitted {
  /** The authenticated caller; undefined when no credential was needed and none was sent. */
  readonly caller: Caller | undefined;
  /** The resolved client address, for the call log. */
  readonly client: string | undefined;
  /** Counts the call's stream out of the caller's open streams; call it once the call ends. */
  readonly release: () => void;
}

export interface Refused {
  readonly refusal: VoiceError;
  /** The label of voice_rejected_calls_total. */
  readonly metric: 'permission_denied' | 'unauthenticated' | 'rate_limited' | 'stream_limit';
  readonly client: string | undefined;
}

export interface AccessControl {
  /** Runs every check in order; the first that fails refuses the call. Exempt methods pass them all. */
  admit(request: AccessRequest): Admitted | Refused;
  /** True for methods exempt from every check (security.exempt_methods: health, reflection). */
  exempt(path: string): boolean;
}

export interface AccessControlOptions {
  readonly security: Config['security'];
  readonly apiKeys: ApiKeys;
  /** Verifies client tokens; without it, a bearer token is refused. */
  readonly tokens?: TokenVerifier | undefined;
  /**
   * Method paths whose calls are not call starts but parts of one already admitted (the audio
   * chunks of a transcription session): every check applies but the per-minute rate.
   */
  readonly unmetered?: readonly string[] | undefined;
}

/**
 * Admission of a call before any handler runs, the same for every transport, in this order: client
 * address against security.allowed_ips, credentials (an API key in x-api-key, or a client token in
 * `authorization: Bearer`), streams open, rate of call starts. Limits are kept per caller: a client
 * token counts against the API key that minted it, whichever transport its calls arrive on; a call
 * without a credential counts against its client address.
 */
export function createAccessControl(options: AccessControlOptions): AccessControl {
  const { security, apiKeys, tokens } = options;
  const unmetered = new Set(options.unmetered ?? []);
  const exempt = exemptMatcher(security.exempt_methods);
  const allowed = createAddressRanges(security.allowed_ips);
  const trustedProxies = createAddressRanges(security.trusted_proxies);
  const limits = security.rate_limit;
  const rate = limits.enabled ? createRateLimiter(limits.max_requests_per_minute) : undefined;
  const streams = limits.enabled ? createStreamCounter(limits.max_concurrent_streams) : undefined;

  return {
    exempt,
    admit(request) {
      const client = clientAddress(request.remoteAddress, request.forwardedFor, trustedProxies);
      if (exempt(request.path)) return { caller: undefined, client, release: () => {} };
      const refused = (refusal: VoiceError, metric: Refused['metric']): Refused => ({
        refusal,
        metric,
        client,
      });
      const addressRefusal = checkAddress(allowed, client);
      if (addressRefusal !== undefined) return refused(addressRefusal, 'permission_denied');
      let identity: Identity;
      try {
        identity = authenticate(security, apiKeys, tokens, request, client);
      } catch (error) {
        if (!(error instanceof VoiceError)) throw error;
        return refused(
          error,
          error.reason === Reason.PermissionDenied ? 'permission_denied' : 'unauthenticated',
        );
      }
      const { caller, quotaKey, who } = identity;
      let release = () => {};
      if (request.streaming && streams !== undefined) {
        const acquired = streams.acquire(quotaKey);
        if (acquired === undefined) {
          return refused(
            new VoiceError(
              Reason.RateLimited,
              `${who} already has ${limits.max_concurrent_streams} streams open (security.rate_limit.max_concurrent_streams); retry when one ends`,
              { retryAfterMs: STREAM_LIMIT_RETRY_MS },
            ),
            'stream_limit',
          );
        }
        release = acquired;
      }
      const taken = unmetered.has(request.path) ? undefined : rate?.take(quotaKey);
      if (taken !== undefined && !taken.allowed) {
        release();
        return refused(
          new VoiceError(
            Reason.RateLimited,
            `${who} has used its ${limits.max_requests_per_minute} calls a minute (security.rate_limit.max_requests_per_minute); retry in ${Math.ceil(taken.retryAfterMs / 1000)} s`,
            { retryAfterMs: taken.retryAfterMs },
          ),
          'rate_limited',
        );
      }
      return { caller, client, release };
    },
  };
}

interface Identity {
  readonly caller: Caller | undefined;
  /** Whose limits the call counts against: a caller id, or the client address. */
  readonly quotaKey: string;
  /** The same, in words for messages (never the key itself). */
  readonly who: string;
}

function checkAddress(allowed: AddressRanges, address: string | undefined): VoiceError | undefined {
  if (allowed.empty || (address !== undefined && allowed.has(address))) return undefined;
  return new VoiceError(
    Reason.PermissionDenied,
    `the client address ${address ?? '(unknown)'} is not in security.allowed_ips`,
  );
}

/**
 * The caller, from an API key or else a client token. A credential that is given and wrong is
 * refused even where none is required: it is a client's mistake worth reporting. Throws the refusal.
 */
function authenticate(
  security: Config['security'],
  apiKeys: ApiKeys,
  tokens: TokenVerifier | undefined,
  request: AccessRequest,
  client: string | undefined,
): Identity {
  const key = request.metadata.get(API_KEY_HEADER);
  if (key !== undefined) {
    const id = apiKeys.configured ? apiKeys.identify(key) : undefined;
    if (id !== undefined) return { caller: { id, via: 'api-key' }, quotaKey: id, who: 'this API key' };
    if (apiKeys.configured) {
      throw new VoiceError(Reason.Unauthenticated, `the API key in ${API_KEY_HEADER} metadata is not valid`);
    }
  } else {
    const token = bearerToken(request.metadata.get(AUTHORIZATION_HEADER));
    if (token !== undefined) {
      if (tokens === undefined) {
        throw new VoiceError(Reason.Unauthenticated, 'this server does not accept client tokens');
      }
      const caller = tokens.verify(token, request.path);
      return { caller, quotaKey: caller.id, who: 'the API key behind this client token' };
    }
  }
  if (security.api_key_required) {
    throw new VoiceError(
      Reason.Unauthenticated,
      `this call needs an API key in ${API_KEY_HEADER} metadata${tokens === undefined ? '' : ', or a client token as "authorization: Bearer <token>"'}`,
    );
  }
  // Without a valid credential, limits follow the address: a made-up key must not buy a fresh bucket.
  const where = client ?? 'unknown';
  return { caller: undefined, quotaKey: `address:${where}`, who: `the client address ${where}` };
}

/** The token of an `authorization: Bearer <token>` value; other schemes are not ours to read. */
function bearerToken(authorization: string | undefined): string | undefined {
  const match = authorization === undefined ? null : /^\s*bearer(?:\s+(.*?))?\s*$/i.exec(authorization);
  return match === null ? undefined : (match[1] ?? '');
}

/** Exempt entries are service names ("grpc.health.v1.Health") or method paths ("/grpc.health.v1.Health/Check"). */
function exemptMatcher(entries: readonly string[]): (path: string) => boolean {
  const methods = new Set<string>();
  const services = new Set<string>();
  for (const entry of entries) {
    const trimmed = entry.trim().replace(/^\//, '');
    if (trimmed.includes('/')) methods.add(`/${trimmed}`);
    else services.add(trimmed);
  }
  return (path) => methods.has(path) || services.has(path.split('/')[1] ?? '');
}
