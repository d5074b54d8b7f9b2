import {
  type status as GrpcStatus,
  Metadata,
  type ServerErrorResponse,
  type StatusObject,
} from '@grpc/grpc-js';
import {
  errorMetadata,
  retryDelayMs,
  retryStatusDetails,
  STATUS_DETAILS_KEY,
} from '../../edge/wire-status.js';
import type { WireStatus } from '../../errors.js';

/**
 * The trailers of a failed call: the catalogue reason, and when a retry makes sense, both the
 * pushback trailer and a google.rpc.RetryInfo status detail.
 */
export function grpcTrailers(status: WireStatus): Metadata {
  const trailers = new Metadata();
  for (const [key, value] of errorMetadata(status)) trailers.set(key, value);
  const delay = retryDelayMs(status);
  if (delay !== undefined) {
    trailers.set(STATUS_DETAILS_KEY, retryStatusDetails(status.code, status.message, delay));
  }
  return trailers;
}

/** A status for grpc-js's sendStatus. */
export function grpcStatus(status: WireStatus): StatusObject {
  return {
    code: status.code as number as GrpcStatus,
    details: status.message,
    metadata: grpcTrailers(status),
  };
}

/** An error for a grpc-js handler callback or stream. */
export function grpcError(status: WireStatus): ServerErrorResponse {
  return Object.assign(new Error(status.message), grpcStatus(status));
}
