import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

/** gRPC's standard trailer carrying a serialized google.rpc.Status with typed error details. */
export const STATUS_DETAILS_TRAILER = 'grpc-status-details-bin';
export const RETRY_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.RetryInfo';

/**
 * A google.rpc.Status whose details hold one google.rpc.RetryInfo, so any gRPC client (grpc-go's
 * status.FromError, connect-es `findDetails`, …) learns when it may retry.
 * Neither message is in @bufbuild/protobuf/wkt, and pulling in their .proto for two messages is
 * more weight than encoding them by hand:
 *   Status    { int32 code = 1; string message = 2; repeated Any details = 3; }
 *   Any       { string type_url = 1; bytes value = 2; }
 *   RetryInfo { Duration retry_delay = 1; }
 *   Duration  { int64 seconds = 1; int32 nanos = 2; }
 */
export function retryStatusDetails(code: number, message: string, retryDelayMs: number): Buffer {
  const delay = Math.max(0, Math.ceil(retryDelayMs));
  const seconds = Math.floor(delay / 1000);
  const nanos = (delay % 1000) * 1_000_000;

  const duration = new BinaryWriter();
  if (seconds !== 0) duration.tag(1, WireType.Varint).int64(seconds);
  if (nanos !== 0) duration.tag(2, WireType.Varint).int32(nanos);
  const retryInfo = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(duration.finish()).finish();
  const any = new BinaryWriter()
    .tag(1, WireType.LengthDelimited)
    .string(RETRY_INFO_TYPE_URL)
    .tag(2, WireType.LengthDelimited)
    .bytes(retryInfo)
    .finish();

  const status = new BinaryWriter();
  if (code !== 0) status.tag(1, WireType.Varint).int32(code);
  if (message.length > 0) status.tag(2, WireType.LengthDelimited).string(message);
  status.tag(3, WireType.LengthDelimited).bytes(any);
  return Buffer.from(status.finish());
}
