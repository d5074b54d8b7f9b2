import { Code, type ConnectError } from '@connectrpc/connect';

/** The server's catalogue reason of a failure as a trailer (servers that predate ErrorInfo). */
const REASON_KEY = 'cortex-error-reason';
const PUSHBACK_KEY = 'grpc-retry-pushback-ms';
const RETRY_INFO = 'google.rpc.RetryInfo';
const ERROR_INFO = 'google.rpc.ErrorInfo';

/**
 * How long to wait before resuming a stream that failed with `error`, or undefined when it must
 * not be resumed: UNAVAILABLE (a draining or stopped server, a refused or dropped connection) and
 * CANCELLED (the caller's own cancel never gets here) are retried after `backoffMs`, and so is a
 * connection reset that connect reports as ABORTED, INTERNAL or UNKNOWN;
 * RESOURCE_EXHAUSTED only for OVER_CAPACITY with a retry delay, after it. A server's retry delay
 * (grpc-retry-pushback-ms, or a google.rpc.RetryInfo detail) takes precedence over the backoff.
 */
export function retryDelayMs(error: ConnectError, backoffMs: number): number | undefined {
  const told = serverDelayMs(error);
  switch (error.code) {
    case Code.Unavailable:
    case Code.Canceled:
      return told ?? backoffMs;
    case Code.ResourceExhausted:
      return reasonOf(error) === 'OVER_CAPACITY' ? told : undefined;
    case Code.Aborted:
    case Code.Internal:
    case Code.Unknown:
      // A connection lost mid-stream (ECONNRESET, RST_STREAM; a browser's fetch "network error"),
      // not a status the server sent.
      return isTransportFailure(error) ? backoffMs : undefined;
    default:
      return undefined;
  }
}

function serverDelayMs(error: ConnectError): number | undefined {
  const pushback = Number(error.metadata.get(PUSHBACK_KEY) ?? Number.NaN);
  if (Number.isFinite(pushback) && pushback >= 0) return pushback;
  for (const detail of error.details) {
    if ('type' in detail && detail.type === RETRY_INFO) return retryInfoDelayMs(detail.value);
  }
  return undefined;
}

/** The catalogue reason: the google.rpc.ErrorInfo detail's (field 1), else the trailer's. */
function reasonOf(error: ConnectError): string | undefined {
  for (const detail of error.details) {
    if ('type' in detail && detail.type === ERROR_INFO) {
      const reason = fields(detail.value).get(1);
      if (reason instanceof Uint8Array) return new TextDecoder().decode(reason);
    }
  }
  return error.metadata.get(REASON_KEY) ?? undefined;
}

function isTransportFailure(error: ConnectError): boolean {
  return (
    error.metadata.get('grpc-status') === null &&
    /http\/2 stream closed|ECONNRESET|EPIPE|socket hang up|network ?error|failed to fetch|load failed/i.test(
      error.rawMessage,
    )
  );
}

/** Decodes google.rpc.RetryInfo { Duration retry_delay = 1 } (Duration: seconds = 1, nanos = 2). */
function retryInfoDelayMs(bytes: Uint8Array): number | undefined {
  const outer = fields(bytes);
  const duration = outer.get(1);
  if (!(duration instanceof Uint8Array)) return undefined;
  const inner = fields(duration);
  const seconds = Number(inner.get(1) ?? 0);
  const nanos = Number(inner.get(2) ?? 0);
  return seconds * 1000 + Math.round(nanos / 1e6);
}

/** The varint and length-delimited fields of a protobuf message, by number (the last of each). */
function fields(bytes: Uint8Array): Map<number, number | Uint8Array> {
  const out = new Map<number, number | Uint8Array>();
  let at = 0;
  const varint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[at++] ?? 0;
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (byte < 0x80 || at >= bytes.length) return value;
    }
  };
  while (at < bytes.length) {
    const key = varint();
    const type = key % 8;
    const number = Math.floor(key / 8);
    if (type === 0) out.set(number, varint());
    else if (type === 2) {
      const length = varint();
      out.set(number, bytes.subarray(at, at + length));
      at += length;
    } else break;
  }
  return out;
}
