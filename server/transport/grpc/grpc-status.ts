import { ConnectError } from '@connectrpc/connect';
import {
  type status as GrpcStatus,
  Metadata,
  type ServerErrorResponse,
  type StatusObject,
} from '@grpc/grpc-js';
import {
  errorMetadata,
  reasonOfStatusDetails,
  STATUS_DETAILS_KEY,
  statusDetails,
} from '../../edge/wire-status.js';
import { toStatus, type WireStatus } from '../../errors.js';

/**
 * The trailers of a failed call: grpc-status-details-bin (a google.rpc.Status with ErrorInfo, and
 * RetryInfo when a retry makes sense), and then the retry pushback trailer too.
 */
export function grpcTrailers(status: WireStatus): Metadata {
  const trailers = new Metadata();
  for (const [key, value] of errorMetadata(status)) trailers.set(key, value);
  trailers.set(STATUS_DETAILS_KEY, statusDetails(status));
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

/**
 * The catalogue reason of a failed status on its way out, and its trailers with our error details.
 * The call adapter's statuses carry them already; a status from a handler that is not ours
 * (grpc-health-check's NOT_FOUND, …) gets an ErrorInfo with the reason of its code, its code and
 * message unchanged.
 */
export function failedStatusTrailers(
  code: number,
  message: string,
  metadata: Metadata | null | undefined,
): { reason: string | undefined; metadata: Metadata } {
  const trailers = metadata ?? new Metadata();
  const details = trailers.get(STATUS_DETAILS_KEY)[0];
  if (Buffer.isBuffer(details)) return { reason: reasonOfStatusDetails(details), metadata: trailers };
  const { reason, info } = toStatus(new ConnectError(message, code));
  trailers.set(STATUS_DETAILS_KEY, statusDetails({ code, message, reason, info, retryAfterMs: undefined }));
  return { reason, metadata: trailers };
}
