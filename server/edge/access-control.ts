import type { Config } from '../config.js';
import { Reason, VoiceError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import type { Caller } from '../service/context.js';
import { type AddressRanges, clientAddress, createAddressRanges } from './addresses.js';
import { API_KEY_HEADER, type ApiKeys } from './api-keys.js';
import { createQuotas, type QuotaRefusal, type QuotaSubject } from './quotas.js';

export { STREAM_LIMIT_RETRY_MS } from './quotas.js';

/** Request metadata carrying a client token: `authorization: Bearer <token>`. */
export const AUTHORIZATION_HEADER = 'authorization';

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
  /** Charges seconds of audio received to the caller's audio budget. */
  readonly chargeAudio: (seconds: number) => void;
}

export interface Refused {
  readonly refusal: VoiceError;
  /** The caller, when the refusal came after its credentials were checked (a quota). */
  readonly caller?: Caller | undefined;
  /** The label of voice_rejected_calls_total. */
  readonly metric: 'permission_denied' | 'unauthenticated' | QuotaRefusal['metric'];
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
  /**
   * Method paths whose calls send audio for transcription: refused while the caller's audio
   * budget (max_audio_seconds_per_minute) is spent.
   */
  readonly audioMethods?: readonly string[] | undefined;
  /** Where refusals, open streams and audio per key are counted. */
  readonly metrics?: Pick<Metrics, 'keyRefusals' | 'keyActiveStreams' | 'keyAudioSeconds'> | undefined;
}

/**
 * Admission of a call before any handler runs, the same for every transport, in this order: client
 * address against security.allowed_ips, credentials (an API key in x-api-key, or a client token in
 * `authorization: Bearer`), then the caller's quotas (server/edge/quotas.ts). Limits are kept per caller: a client
 * token counts against the API key that minted it, whichever transport its calls arrive on; a call
 * without a credential counts against its client address.
 */
export function createAccessControl(options: AccessControlOptions): AccessControl {
  const { security, apiKeys, tokens } = options;
  const unmetered = new Set(options.unmetered ?? []);
  const exempt = exemptMatcher(security.exempt_methods);
  const allowed = createAddressRanges(security.allowed_ips);
  const trustedProxies = createAddressRanges(security.trusted_proxies);
  const audioMethods = new Set(options.audioMethods ?? []);
  const quotas = createQuotas(security.rate_limit, options.metrics);

  return {
    exempt,
    admit(request) {
      const client = clientAddress(request.remoteAddress, request.forwardedFor, trustedProxies);
      if (exempt(request.path)) {
        return { caller: undefined, client, release: () => {}, chargeAudio: () => {} };
      }
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
      const granted = quotas.admit(identity.subject, {
        streaming: request.streaming,
        metered: !unmetered.has(request.path),
        audio: audioMethods.has(request.path),
      });
      if ('refusal' in granted)
        return { ...refused(granted.refusal, granted.metric), caller: identity.caller };
      return { caller: identity.caller, client, ...granted };
    },
  };
}

interface Identity {
  readonly caller: Caller | undefined;
  /** Whose limits the call counts against: a key (by id and name), or the client address. */
  readonly subject: QuotaSubject;
}

function checkAddress(allowed: AddressRanges, address: string | undefined): VoiceError | undefined {
  if (allowed.empty || (address !== undefined && allowed.has(address))) return undefined;
  return new VoiceError(
    Reason.PermissionDenied,
    `the client address ${address ?? '(unknown)'} is not in security.allowed_ips`,
    { info: { limit: 'security.allowed_ips' } },
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
    const account = id === undefined ? undefined : apiKeys.account(id);
    if (id !== undefined && account !== undefined) {
      const subject = { identity: id, keyName: account.name, limits: account.limits };
      return {
        caller: { id, via: 'api-key', name: account.name },
        subject: { ...subject, who: `the API key "${account.name}"` },
      };
    }
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
      const account = apiKeys.account(caller.id);
      if (account === undefined) {
        // The key that minted it is no longer configured: its tokens go with it.
        throw new VoiceError(
          Reason.Unauthenticated,
          'the API key that minted this client token is no longer accepted; fetch a token with a current key',
        );
      }
      const who = `the API key "${account.name}" behind this client token`;
      return {
        caller: { ...caller, name: account.name },
        subject: { identity: caller.id, keyName: account.name, limits: account.limits, who },
      };
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
  return {
    caller: undefined,
    subject: {
      identity: `address:${where}`,
      keyName: undefined,
      limits: {},
      who: `the client address ${where}`,
    },
  };
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
