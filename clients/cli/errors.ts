import { Code, ConnectError } from '@connectrpc/connect';

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
  const reason = connect.metadata.get('cortex-error-reason');
  return `${Code[connect.code] ?? connect.code}: ${connect.rawMessage}${reason ? ` [${reason}]` : ''}`;
}
