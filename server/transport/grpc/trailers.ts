import { Metadata } from '@grpc/grpc-js';
import { retryStatusDetails, STATUS_DETAILS_TRAILER } from './status-details.js';

/** Trailer naming the catalogue reason of a failure, so clients need not parse messages. */
export const ERROR_REASON_TRAILER = 'cortex-error-reason';
/** gRPC's standard trailer telling a client when it may retry. */
export const RETRY_PUSHBACK_TRAILER = 'grpc-retry-pushback-ms';

/**
 * The trailers of every failed call, wherever it is refused: the reason, and when a retry makes
 * sense, both the pushback trailer and a google.rpc.RetryInfo status detail.
 */
export function errorTrailers(
  code: number,
  message: string,
  reason: string,
  retryAfterMs?: number,
): Metadata {
  const trailers = new Metadata();
  trailers.set(ERROR_REASON_TRAILER, reason);
  if (retryAfterMs !== undefined) {
    const delay = Math.ceil(retryAfterMs);
    trailers.set(RETRY_PUSHBACK_TRAILER, String(delay));
    trailers.set(STATUS_DETAILS_TRAILER, retryStatusDetails(code, message, delay));
  }
  return trailers;
}
