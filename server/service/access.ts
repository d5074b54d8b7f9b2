import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import type { Access } from '../gen/cortex/voice/v1/access_pb.js';
import type { CallContext, Caller, ServiceHandlers } from './context.js';

/** Where callers send their API key (the edge reads it; named here for messages). */
const API_KEY_METADATA = 'x-api-key';

/**
 * What the Access service needs of the token library (server/edge/client-token.ts's ClientTokens
 * has this shape); declared here so that the service does not depend on the edge.
 */
export interface TokenMinter {
  /** The lifetime of a token whose request names none, in seconds. */
  readonly ttlSeconds: number;
  mint(request: { caller: Caller; scopes?: readonly string[]; ttlSeconds?: number }): {
    readonly token: string;
    readonly expiresAt: Date;
    readonly tokenId: string;
    readonly scopes: readonly string[];
  };
}

export interface AccessServiceOptions {
  readonly tokens: TokenMinter;
  /** The longest lifetime a request may ask for (security.client_tokens.max_ttl_seconds). */
  readonly maxTtlSeconds: number;
}

/** The Access service: client tokens minted for callers that hold an API key. */
export function createAccessService(options: AccessServiceOptions): ServiceHandlers<typeof Access> {
  const { tokens, maxTtlSeconds } = options;
  if (!Number.isInteger(maxTtlSeconds) || maxTtlSeconds < 1) {
    throw new RangeError(
      `security.client_tokens.max_ttl_seconds must be a whole number ≥ 1, not ${maxTtlSeconds}`,
    );
  }
  if (tokens.ttlSeconds > maxTtlSeconds) {
    throw new RangeError(
      `security.client_tokens.ttl_seconds = ${tokens.ttlSeconds} is longer than security.client_tokens.max_ttl_seconds = ${maxTtlSeconds}`,
    );
  }

  return {
    async createClientToken(request, ctx) {
      const caller = apiKeyCaller(ctx);
      if (request.ttlSeconds > maxTtlSeconds) {
        throw invalidArgument(
          'ttl_seconds',
          `${request.ttlSeconds} s is longer than the longest allowed, ${maxTtlSeconds} s (security.client_tokens.max_ttl_seconds)`,
        );
      }
      const minted = tokens.mint({
        caller,
        scopes: request.scopes,
        ...(request.ttlSeconds > 0 ? { ttlSeconds: request.ttlSeconds } : {}),
      });
      // The token id and what it allows; never the token.
      ctx.logger.info(
        {
          tokenId: minted.tokenId,
          caller: caller.name,
          expiresAt: minted.expiresAt.toISOString(),
          scopes: minted.scopes,
        },
        'client token minted',
      );
      return {
        token: minted.token,
        expireTime: timestampFromDate(minted.expiresAt),
        scopes: [...minted.scopes],
      };
    },
  };
}

/** Only a backend holding an API key may mint: a page holding a token must not extend its own access. */
function apiKeyCaller(ctx: CallContext): Caller {
  const { caller } = ctx;
  if (caller === undefined) {
    throw new VoiceError(
      Reason.Unauthenticated,
      `CreateClientToken needs an API key in ${API_KEY_METADATA} metadata: a backend that holds one mints client tokens for its pages`,
    );
  }
  if (caller.via !== 'api-key') {
    throw new VoiceError(
      Reason.PermissionDenied,
      `a client token cannot mint client tokens: CreateClientToken needs an API key in ${API_KEY_METADATA} metadata`,
    );
  }
  return caller;
}
