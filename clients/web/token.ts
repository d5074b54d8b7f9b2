/**
 * Client tokens for pages. A page never holds an API key: its backend mints a short-lived client
 * token (`cortex.voice.v1.Access/CreateClientToken`) and hands it over; the page sends it as
 * `authorization: Bearer <token>`.
 */

/** A token with the time it stops being accepted (as CreateClientTokenResponse gives it). */
export interface ClientToken {
  readonly token: string;
  /** When it expires: a Date, epoch milliseconds, or an RFC 3339 string (a Timestamp in JSON). */
  readonly expireTime?: Date | number | string;
}

/**
 * A fixed token, or a function that fetches a fresh one, e.g. from the page's own backend. The
 * function is called before the first call and again once the token it gave is within
 * `refreshMarginMs` of expiring (its expiry is read from `expireTime`, else from the token's JWT
 * `exp` claim; a token with neither is fetched again for every call).
 */
export type TokenSource = string | (() => Promise<string | ClientToken>);

export interface TokenProvider {
  /** The token to send now; fetches a fresh one when the cached one is near expiry. */
  get(): Promise<string>;
  /** Forgets `token` (the server refused it), so the next call fetches another. */
  invalidate(token: string): void;
}

/** Refresh this long before expiry, so that a call never starts with a token about to lapse. */
export const DEFAULT_REFRESH_MARGIN_MS = 30_000;

export function createTokenProvider(
  source: TokenSource,
  options: { refreshMarginMs?: number; now?: () => number } = {},
): TokenProvider {
  if (typeof source === 'string') return { get: async () => source, invalidate: () => {} };
  const margin = options.refreshMarginMs ?? DEFAULT_REFRESH_MARGIN_MS;
  const now = options.now ?? Date.now;
  let cached: { token: string; expiresAt: number | undefined } | undefined;
  let fetching: Promise<string> | undefined;

  const fetchToken = async (): Promise<string> => {
    const answer = await source();
    const token = typeof answer === 'string' ? answer : answer.token;
    if (typeof token !== 'string' || token === '') throw new TypeError('the token source gave no token');
    const expiresAt =
      typeof answer === 'string' || answer.expireTime === undefined
        ? jwtExpiry(token)
        : toEpochMs(answer.expireTime);
    cached = { token, expiresAt };
    return token;
  };

  return {
    async get() {
      if (cached?.expiresAt !== undefined && now() < cached.expiresAt - margin) return cached.token;
      // Calls that start together share one fetch.
      fetching ??= fetchToken().finally(() => {
        fetching = undefined;
      });
      return fetching;
    },
    invalidate(token) {
      if (cached?.token === token) cached = undefined;
    },
  };
}

/** The `exp` claim of a JSON Web Token in epoch ms, or undefined when it is not a readable JWT. */
export function jwtExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const claims: unknown = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '=')));
    const exp = (claims as { exp?: unknown } | null)?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function toEpochMs(time: Date | number | string): number | undefined {
  const ms = time instanceof Date ? time.getTime() : typeof time === 'number' ? time : Date.parse(time);
  return Number.isFinite(ms) ? ms : undefined;
}
