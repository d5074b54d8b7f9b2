import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import type { WireStatus } from '../errors.js';

/**
 * What a failed call carries besides its code and message, whatever the protocol: the catalogue
 * reason, and where a retry makes sense, when. gRPC and gRPC-Web send these as trailers, Connect as
 * error metadata (response headers of a unary call, the end-of-stream message of a stream).
 */

/** The catalogue reason of a failure (server/errors.ts), so clients need not parse messages. */
export const ERROR_REASON_KEY = 'cortex-error-reason';
/** gRPC's standard metadata telling a client when it may retry, in milliseconds. */
export const RETRY_PUSHBACK_KEY = 'grpc-retry-pushback-ms';
/** gRPC's standard trailer carrying a serialized google.rpc.Status with typed error details. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
/** The error detail naming the retry delay; any gRPC or Connect client can decode it. */
export const RETRY_INFO_TYPE = 'google.rpc.RetryInfo';
export const RETRY_INFO_TYPE_URL = `type.googleapis.com/${RETRY_INFO_TYPE}`;

/** The retry delay a status announces, in whole milliseconds, if any. */
export function retryDelayMs(status: Pick<WireStatus, 'retryAfterMs'>): number | undefined {
  return status.retryAfterMs === undefined ? undefined : Math.max(0, Math.ceil(status.retryAfterMs));
}

/** The text metadata of a failed call: its reason, and its retry pushback when it has one. */
export function errorMetadata(status: Pick<WireStatus, 'reason' | 'retryAfterMs'>): Array<[string, string]> {
  const entries: Array<[string, string]> = [[ERROR_REASON_KEY, status.reason]];
  const delay = retryDelayMs(status);
  if (delay !== undefined) entries.push([RETRY_PUSHBACK_KEY, String(delay)]);
  return entries;
}

/**
 * A google.rpc.RetryInfo, encoded. Neither it nor google.rpc.Status is in @bufbuild/protobuf/wkt,
 * and pulling in their .proto for two messages is more weight than encoding them by hand:
 *   RetryInfo { Duration retry_delay = 1; }
 *   Duration  { int64 seconds = 1; int32 nanos = 2; }
 */
export function retryInfo(delayMs: number): Uint8Array {
  const delay = Math.max(0, Math.ceil(delayMs));
  const seconds = Math.floor(delay / 1000);
  const nanos = (delay % 1000) * 1_000_000;
  const duration = new BinaryWriter();
  if (seconds !== 0) duration.tag(1, WireType.Varint).int64(seconds);
  if (nanos !== 0) duration.tag(2, WireType.Varint).int32(nanos);
  return new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(duration.finish()).finish();
}

/**
 * A google.rpc.Status whose details hold one google.rpc.RetryInfo, for grpc-status-details-bin, so
 * any gRPC client (grpc-go's status.FromError, connect-es `findDetails`, …) learns when it may retry.
 *   Status { int32 code = 1; string message = 2; repeated Any details = 3; }
 *   Any    { string type_url = 1; bytes value = 2; }
 */
export function retryStatusDetails(code: number, message: string, retryDelay: number): Buffer {
  const any = new BinaryWriter()
    .tag(1, WireType.LengthDelimited)
    .string(RETRY_INFO_TYPE_URL)
    .tag(2, WireType.LengthDelimited)
    .bytes(retryInfo(retryDelay))
    .finish();
  const status = new BinaryWriter();
  if (code !== 0) status.tag(1, WireType.Varint).int32(code);
  if (message.length > 0) status.tag(2, WireType.LengthDelimited).string(message);
  status.tag(3, WireType.LengthDelimited).bytes(any);
  return Buffer.from(status.finish());
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
