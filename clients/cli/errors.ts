import { Code, ConnectError } from '@connectrpc/connect';
import { errorReasonOf } from '../common/errors.js';

/** A failure the CLI reports in one line and exits on. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** One line a newcomer understands, for anything a call can throw. */
export function describeFailure(error: unknown, address: string): string {
  if (error instanceof CliError) return error.message;
  const connect = ConnectError.from(error);
  const cause = (connect.cause ?? error) as NodeJS.ErrnoException | undefined;
  const networkCode =
    cause?.code ??
    /\b(ECONNREFUSED|ENOTFOUND|ECONNRESET|ETIMEDOUT|EHOSTUNREACH)\b/.exec(connect.message)?.[1];
  if (connect.code === Code.Unavailable && networkCode) {
    return `cannot reach the server at ${address} (${networkCode}); is it running? (set --address or VOICE_ADDRESS)`;
  }
  const reason = errorReasonOf(connect);
  return `${grpcCodeName(connect.code)}: ${connect.rawMessage}${reason ? ` [${reason}]` : ''}`;
}

/** The gRPC spelling of a status code, e.g. INVALID_ARGUMENT, as grpcurl and server logs print it. */
function grpcCodeName(code: Code): string {
  if (code === Code.Canceled) return 'CANCELLED';
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}
