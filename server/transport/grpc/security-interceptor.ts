import {
  status as GrpcStatus,
  type Metadata,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerMethodDefinition,
} from '@grpc/grpc-js';
import type { Config } from '../../config.js';
import { Reason } from '../../errors.js';
import type { Metrics } from '../../observability/metrics.js';
import { API_KEY_HEADER, type ApiKeys } from './api-keys.js';
import { CLIENT_ADDRESS_METADATA } from './call-adapter.js';
import {
  type AddressRanges,
  clientAddress,
  createAddressRanges,
  FORWARDED_FOR_HEADER,
} from './ip-allow-list.js';
import { createRateLimiter, createStreamCounter } from './rate-limiter.js';
import { errorTrailers } from './trailers.js';

/** When a client refused for having too many streams open may try again. */
const STREAM_LIMIT_RETRY_MS = 1000;

export interface SecurityOptions {
  readonly security: Config['security'];
  readonly apiKeys: ApiKeys;
  readonly metrics: Metrics;
}

/**
 * Admission control before any handler runs, in this order: client address against
 * security.allowed_ips, API key, rate of call starts, streams open. Exempt methods (health and
 * reflection by default) skip all of it so probes keep working. The API key is removed from the
 * metadata once checked, so nothing after this point can log or forward it.
 */
export function createSecurityInterceptor(options: SecurityOptions): ServerInterceptor {
  const { security, apiKeys, metrics } = options;
  const exempt = exemptMatcher(security.exempt_methods);
  const allowed = createAddressRanges(security.allowed_ips);
  const trustedProxies = createAddressRanges(security.trusted_proxies);
  const limits = security.rate_limit;
  const rate = limits.enabled ? createRateLimiter(limits.max_requests_per_minute) : undefined;
  const streams = limits.enabled ? createStreamCounter(limits.max_concurrent_streams) : undefined;

  return (descriptor: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    if (exempt(descriptor.path)) return new ServerInterceptingCall(call);
    const streaming = descriptor.requestStream || descriptor.responseStream;
    let release: (() => void) | undefined;
    const refuse = (refusal: Refusal) => {
      metrics.rejectedCalls.inc({ reason: refusal.metric });
      call.sendStatus(refusalStatus(refusal));
    };

    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const address = clientAddress(
              call.getConnectionInfo().remoteAddress,
              textValues(metadata, FORWARDED_FOR_HEADER),
              trustedProxies,
            );
            if (address !== undefined) metadata.set(CLIENT_ADDRESS_METADATA, address);
            const verdict = checkAddress(allowed, address) ?? checkKey(security, apiKeys, metadata, address);
            if ('metric' in verdict) return refuse(verdict);
            const { identity, who } = verdict;
            if (streaming && streams) {
              release = streams.acquire(identity);
              if (release === undefined) {
                return refuse({
                  metric: 'stream_limit',
                  code: GrpcStatus.RESOURCE_EXHAUSTED,
                  reason: Reason.RateLimited,
                  message: `${who} already has ${limits.max_concurrent_streams} streams open (security.rate_limit.max_concurrent_streams); retry when one ends`,
                  retryAfterMs: STREAM_LIMIT_RETRY_MS,
                });
              }
            }
            const taken = rate?.take(identity);
            if (taken && !taken.allowed) {
              release?.();
              return refuse({
                metric: 'rate_limited',
                code: GrpcStatus.RESOURCE_EXHAUSTED,
                reason: Reason.RateLimited,
                message: `${who} has used its ${limits.max_requests_per_minute} calls a minute (security.rate_limit.max_requests_per_minute); retry in ${Math.ceil(taken.retryAfterMs / 1000)} s`,
                retryAfterMs: taken.retryAfterMs,
              });
            }
            nextMetadata(metadata);
          },
          onCancel: () => release?.(),
        });
      },
      sendStatus: (status, next) => {
        release?.();
        next(status);
      },
    });
  };
}

interface Refusal {
  readonly metric: 'permission_denied' | 'unauthenticated' | 'rate_limited' | 'stream_limit';
  readonly code: GrpcStatus;
  readonly reason: Reason;
  readonly message: string;
  readonly retryAfterMs?: number;
}

interface Admitted {
  /** Whose limits the call counts against: an API key's digest, or the client address. */
  readonly identity: string;
  /** The same, in words for messages (never the key itself). */
  readonly who: string;
}

function checkAddress(allowed: AddressRanges, address: string | undefined): Refusal | undefined {
  if (allowed.empty || (address !== undefined && allowed.has(address))) return undefined;
  return {
    metric: 'permission_denied',
    code: GrpcStatus.PERMISSION_DENIED,
    reason: Reason.PermissionDenied,
    message: `the client address ${address ?? '(unknown)'} is not in security.allowed_ips`,
  };
}

function checkKey(
  security: Config['security'],
  apiKeys: ApiKeys,
  metadata: Metadata,
  address: string | undefined,
): Refusal | Admitted {
  const given = textValues(metadata, API_KEY_HEADER)[0];
  metadata.remove(API_KEY_HEADER);
  const identity = given === undefined || !apiKeys.configured ? undefined : apiKeys.identify(given);
  if (identity !== undefined) return { identity, who: 'this API key' };
  // A wrong key is refused even where keys are optional: it is a client's mistake worth reporting.
  if (given !== undefined && apiKeys.configured) {
    return unauthenticated(`the API key in ${API_KEY_HEADER} metadata is not valid`);
  }
  if (security.api_key_required) {
    return unauthenticated(`this call needs an API key in ${API_KEY_HEADER} metadata`);
  }
  // Without a valid key, limits follow the address: a made-up key must not buy a fresh bucket.
  const where = address ?? 'unknown';
  return { identity: `address:${where}`, who: `the client address ${where}` };
}

function unauthenticated(message: string): Refusal {
  return {
    metric: 'unauthenticated',
    code: GrpcStatus.UNAUTHENTICATED,
    reason: Reason.Unauthenticated,
    message,
  };
}

function refusalStatus(refusal: Refusal) {
  return {
    code: refusal.code,
    details: refusal.message,
    metadata: errorTrailers(refusal.code, refusal.message, refusal.reason, refusal.retryAfterMs),
  };
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

function textValues(metadata: Metadata, key: string): string[] {
  return metadata.get(key).filter((value): value is string => typeof value === 'string');
}
