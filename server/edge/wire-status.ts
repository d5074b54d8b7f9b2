import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { anyPack, anyUnpack } from '@bufbuild/protobuf/wkt';
import { ERROR_DOMAIN, type WireStatus } from '../errors.js';
import {
  type ErrorInfo,
  ErrorInfoSchema,
  type RetryInfo,
  RetryInfoSchema,
} from '../gen/google/rpc/error_details_pb.js';
import { StatusSchema } from '../gen/google/rpc/status_pb.js';

/**
 * What a failed call carries besides its code and message, whatever the protocol: a
 * google.rpc.ErrorInfo (AIP-193) naming the catalogue reason, the ERROR_DOMAIN and the error's
 * machine-readable facts, and where a retry makes sense a google.rpc.RetryInfo. gRPC and gRPC-Web
 * send them in grpc-status-details-bin, Connect as the error's details.
 */

/** gRPC's standard metadata telling a client when it may retry, in milliseconds. */
export const RETRY_PUSHBACK_KEY = 'grpc-retry-pushback-ms';
/** gRPC's standard trailer carrying a serialized google.rpc.Status with typed error details. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

type DetailedStatus = Pick<WireStatus, 'reason' | 'info' | 'retryAfterMs'>;

/** The retry delay a status announces, in whole milliseconds, if any. */
export function retryDelayMs(status: Pick<WireStatus, 'retryAfterMs'>): number | undefined {
  return status.retryAfterMs === undefined ? undefined : Math.max(0, Math.ceil(status.retryAfterMs));
}

/** The text metadata of a failed call: the retry pushback, when it has one. */
export function errorMetadata(status: Pick<WireStatus, 'retryAfterMs'>): Array<[string, string]> {
  const delay = retryDelayMs(status);
  return delay === undefined ? [] : [[RETRY_PUSHBACK_KEY, String(delay)]];
}

/** The google.rpc.ErrorInfo of a failed call. */
export function errorInfo(status: Pick<WireStatus, 'reason' | 'info'>): ErrorInfo {
  return create(ErrorInfoSchema, {
    reason: status.reason,
    domain: ERROR_DOMAIN,
    metadata: { ...status.info },
  });
}

/** A google.rpc.RetryInfo for a delay in milliseconds (rounded up to whole ms). */
export function retryInfo(delayMs: number): RetryInfo {
  const delay = Math.max(0, Math.ceil(delayMs));
  return create(RetryInfoSchema, {
    retryDelay: { seconds: BigInt(Math.floor(delay / 1000)), nanos: (delay % 1000) * 1_000_000 },
  });
}

/** The typed details of a failed call: always an ErrorInfo, and a RetryInfo when a retry delay exists. */
export interface ErrorDetails {
  readonly errorInfo: ErrorInfo;
  readonly retryInfo: RetryInfo | undefined;
}

export function errorDetails(status: DetailedStatus): ErrorDetails {
  const delay = retryDelayMs(status);
  return { errorInfo: errorInfo(status), retryInfo: delay === undefined ? undefined : retryInfo(delay) };
}

/**
 * A serialized google.rpc.Status for grpc-status-details-bin, so any gRPC client (grpc-go's
 * status.FromError, connect-es `findDetails`, grpcurl through reflection) reads the details.
 */
export function statusDetails(status: DetailedStatus & Pick<WireStatus, 'code' | 'message'>): Buffer {
  const details = errorDetails(status);
  const bytes = toBinary(
    StatusSchema,
    create(StatusSchema, {
      code: status.code,
      message: status.message,
      details: [
        anyPack(ErrorInfoSchema, details.errorInfo),
        ...(details.retryInfo === undefined ? [] : [anyPack(RetryInfoSchema, details.retryInfo)]),
      ],
    }),
  );
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The catalogue reason in a serialized google.rpc.Status, if it holds an ErrorInfo of our domain. */
export function reasonOfStatusDetails(bytes: Uint8Array): string | undefined {
  try {
    for (const detail of fromBinary(StatusSchema, bytes).details) {
      const info = anyUnpack(detail, ErrorInfoSchema);
      if (info?.domain === ERROR_DOMAIN) return info.reason;
    }
  } catch {
    // Not a google.rpc.Status: no reason to report.
  }
  return undefined;
}

const CODE_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** The gRPC name of a status code ("INVALID_ARGUMENT"), as in metrics and call logs. */
export function codeName(code: number): string {
  return CODE_NAMES[code] ?? String(code);
}
