import { Code, type ConnectError } from '@connectrpc/connect';
import { errorReasonOf, Reason, retryDelayOf } from './errors.js';

/**
 * How long to wait before resuming a stream that failed with `error`, or undefined when it must
 * not be resumed: UNAVAILABLE (a draining or stopped server, a refused or dropped connection) and
 * CANCELLED (the caller's own cancel never gets here) are retried after `backoffMs`, and so is a
 * connection reset that connect reports as ABORTED, INTERNAL or UNKNOWN;
 * RESOURCE_EXHAUSTED only for OVER_CAPACITY with a retry delay, after it. A server's retry delay
 * (grpc-retry-pushback-ms, or a google.rpc.RetryInfo detail) takes precedence over the backoff.
 */
export function retryDelayMs(error: ConnectError, backoffMs: number): number | undefined {
  const told = retryDelayOf(error);
  switch (error.code) {
    case Code.Unavailable:
    case Code.Canceled:
      return told ?? backoffMs;
    case Code.ResourceExhausted:
      return errorReasonOf(error) === Reason.OverCapacity ? told : undefined;
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

function isTransportFailure(error: ConnectError): boolean {
  return (
    error.metadata.get('grpc-status') === null &&
    /http\/2 stream closed|ECONNRESET|EPIPE|socket hang up|network ?error|failed to fetch|load failed/i.test(
      error.rawMessage,
    )
  );
}
