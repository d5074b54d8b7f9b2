import { ConnectError } from '@connectrpc/connect';
import { ERROR_DOMAIN, Reason } from '../../server/errors.js';
import { ErrorInfoSchema, RetryInfoSchema } from '../../server/gen/google/rpc/error_details_pb.js';

/**
 * Reading a failed call's standard error details (AIP-193), for the Node SDK, the browser SDK and
 * the CLI alike: every status the server sends carries a google.rpc.ErrorInfo whose `reason` is
 * from the server's catalogue, and a google.rpc.RetryInfo where a retry makes sense.
 */

/** The `domain` of the service's ErrorInfo; an ErrorInfo of another domain is someone else's. */
export const VOICE_ERROR_DOMAIN = ERROR_DOMAIN;

export { Reason };

/** The google.rpc.ErrorInfo of a failed call, as the server sent it. */
export interface VoiceErrorInfo {
  /** A reason from the catalogue (`Reason`); a newer server may send one this SDK does not know. */
  readonly reason: Reason | (string & {});
  readonly domain: string;
  /** Machine-readable facts: the config key of a limit (`limit`), the field at fault (`field`), … */
  readonly metadata: Readonly<Record<string, string>>;
}

/** The service's ErrorInfo in an error a call threw, or undefined (not a call error, or not ours). */
export function errorInfoOf(error: unknown): VoiceErrorInfo | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  const info = error.findDetails(ErrorInfoSchema).find((candidate) => candidate.domain === ERROR_DOMAIN);
  return info === undefined
    ? undefined
    : { reason: info.reason, domain: info.domain, metadata: info.metadata };
}

/** The catalogue reason of an error a call threw, if the server gave one. */
export function errorReasonOf(error: unknown): VoiceErrorInfo['reason'] | undefined {
  return errorInfoOf(error)?.reason;
}

/**
 * When the server says a failed call may be retried, in ms: its google.rpc.RetryInfo, else the
 * grpc-retry-pushback-ms metadata; undefined when it gave neither.
 */
export function retryDelayOf(error: unknown): number | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  if (delay !== undefined) return Number(delay.seconds) * 1000 + Math.round(delay.nanos / 1e6);
  const pushback = error.metadata.get('grpc-retry-pushback-ms');
  return pushback === null || !/^\d+$/.test(pushback) ? undefined : Number(pushback);
}
