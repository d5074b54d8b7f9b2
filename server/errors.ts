import { Code, ConnectError } from '@connectrpc/connect';

/**
 * The `domain` of every google.rpc.ErrorInfo the service sends (AIP-193): together with `reason`
 * it names a failure uniquely, so a client that talks to several services can tell ours apart.
 */
export const ERROR_DOMAIN = 'voice.cortex.ai';

/**
 * The catalogue of reasons a call can fail. Every error the core raises names one; the gRPC code
 * follows from it. Clients receive the reason as the `reason` of a google.rpc.ErrorInfo in the
 * status details (grpc-status-details-bin over gRPC and gRPC-Web, the error's details over
 * Connect), so they can branch on it instead of on message text.
 */
export const Reason = {
  /** A required field is missing or a value is outside its allowed range. */
  InvalidArgument: 'INVALID_ARGUMENT',
  /** Audio bytes that cannot be decoded in the declared format (e.g. a broken WAV header). */
  InvalidAudio: 'INVALID_AUDIO',
  /** Text that cannot be spoken (empty, not valid UTF-8). */
  InvalidText: 'INVALID_TEXT',
  /** A message arrived out of order: audio or text before the config, a second config. */
  OutOfOrder: 'OUT_OF_ORDER',
  /** The named model, voice or language is not one the server offers. */
  UnknownResource: 'UNKNOWN_RESOURCE',
  /** What the call names (a health service name, …) does not exist on this server. */
  NotFound: 'NOT_FOUND',
  /** The transcription session named is unknown, or has ended (its audio ended, it failed, it idled). */
  SessionNotFound: 'SESSION_NOT_FOUND',
  /** A transcription session received no audio for service.sessions.idle_timeout_ms and has ended. */
  SessionIdle: 'SESSION_IDLE',
  /** A per-message or per-stream size or duration limit was passed. */
  LimitExceeded: 'LIMIT_EXCEEDED',
  /** The engine's work queue or in-flight cap is full. */
  Overloaded: 'OVERLOADED',
  /**
   * A new live stream would push the expected delay of finals past performance.max_final_delay_ms:
   * retry later or on another server.
   */
  OverCapacity: 'OVER_CAPACITY',
  /** An engine this call needs is not loaded (model missing, still warming up). */
  EngineUnavailable: 'ENGINE_UNAVAILABLE',
  /** A model worker died while running this call's work. */
  WorkerCrashed: 'WORKER_CRASHED',
  /** The server is draining for shutdown. */
  Draining: 'DRAINING',
  /** The caller cancelled. */
  Cancelled: 'CANCELLED',
  /** The call's deadline passed. */
  DeadlineExceeded: 'DEADLINE_EXCEEDED',
  /** Missing or wrong credentials. */
  Unauthenticated: 'UNAUTHENTICATED',
  /** The caller may not use this service (e.g. its address is not allowed). */
  PermissionDenied: 'PERMISSION_DENIED',
  /** A rate limit was hit. */
  RateLimited: 'RATE_LIMITED',
  /**
   * The method is not served here, or the call does not fit its kind (e.g. a unary call that sent
   * no request message).
   */
  Unimplemented: 'UNIMPLEMENTED',
  /** Anything unexpected. The message sent is generic; the cause is logged. */
  Internal: 'INTERNAL',
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

const codeOfReason: Record<Reason, Code> = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  INVALID_AUDIO: Code.InvalidArgument,
  INVALID_TEXT: Code.InvalidArgument,
  OUT_OF_ORDER: Code.FailedPrecondition,
  UNKNOWN_RESOURCE: Code.InvalidArgument,
  NOT_FOUND: Code.NotFound,
  SESSION_NOT_FOUND: Code.NotFound,
  SESSION_IDLE: Code.DeadlineExceeded,
  LIMIT_EXCEEDED: Code.ResourceExhausted,
  OVERLOADED: Code.ResourceExhausted,
  OVER_CAPACITY: Code.ResourceExhausted,
  ENGINE_UNAVAILABLE: Code.Unavailable,
  WORKER_CRASHED: Code.Unavailable,
  DRAINING: Code.Unavailable,
  CANCELLED: Code.Canceled,
  DEADLINE_EXCEEDED: Code.DeadlineExceeded,
  UNAUTHENTICATED: Code.Unauthenticated,
  PERMISSION_DENIED: Code.PermissionDenied,
  RATE_LIMITED: Code.ResourceExhausted,
  UNIMPLEMENTED: Code.Unimplemented,
  INTERNAL: Code.Internal,
};

/**
 * The reason given to a status raised by a transport's protocol code rather than by the core;
 * codes not listed (UNKNOWN, INTERNAL, …) are treated as unexpected.
 */
const reasonOfCode: Partial<Record<Code, Reason>> = {
  [Code.Canceled]: Reason.Cancelled,
  [Code.InvalidArgument]: Reason.InvalidArgument,
  [Code.NotFound]: Reason.NotFound,
  [Code.DeadlineExceeded]: Reason.DeadlineExceeded,
  [Code.PermissionDenied]: Reason.PermissionDenied,
  [Code.ResourceExhausted]: Reason.LimitExceeded,
  [Code.Unauthenticated]: Reason.Unauthenticated,
  [Code.Unimplemented]: Reason.Unimplemented,
};

export interface VoiceErrorOptions {
  /** When the caller may retry, for RESOURCE_EXHAUSTED and UNAVAILABLE. */
  readonly retryAfterMs?: number;
  /**
   * Machine-readable facts about this failure for the caller (google.rpc.ErrorInfo metadata): the
   * limit that was hit, how much audio was processed, … Keys are lower_snake_case; values are text.
   */
  readonly info?: Readonly<Record<string, string>>;
  readonly cause?: unknown;
}

/**
 * The one error type of the core: a reason from the catalogue, a gRPC code, a message for the caller.
 *
 * It is a genuine ConnectError, so that anything built on connect-es (the web transport, clients,
 * interceptors) keeps its code: `voiceError instanceof ConnectError` holds and
 * `ConnectError.from(voiceError)` returns it unchanged. ConnectError's own `instanceof` check
 * accepts a subclass only while its `name` is "ConnectError", so the name stays; tell a VoiceError
 * apart with `instanceof VoiceError` or by its `reason`.
 */
export class VoiceError extends ConnectError {
  readonly reason: Reason;
  readonly retryAfterMs: number | undefined;
  readonly info: Readonly<Record<string, string>>;

  /**
   * VoiceError would otherwise inherit ConnectError's check, which accepts every error named
   * "ConnectError"; a VoiceError is only what this class (or a subclass) constructed.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(VoiceError, value);
  }

  constructor(reason: Reason, message: string, options: VoiceErrorOptions = {}) {
    super(message, codeOfReason[reason], undefined, undefined, options.cause);
    this.reason = reason;
    this.retryAfterMs = options.retryAfterMs;
    this.info = options.info ?? {};
  }
}

/** What goes on the wire for a failed call. */
export interface WireStatus {
  readonly code: Code;
  readonly message: string;
  readonly reason: Reason;
  readonly retryAfterMs: number | undefined;
  /** The error's machine-readable facts (VoiceErrorOptions.info); empty when it has none. */
  readonly info: Readonly<Record<string, string>>;
  /** True when the error was not raised on purpose; its cause should be logged. */
  readonly unexpected: boolean;
}

/**
 * Maps anything thrown by the core to the status sent to the caller. An aborted signal wins: a call
 * that was cancelled or ran past its deadline reports that, whatever error the abort caused inside.
 */
export function toStatus(error: unknown, signal?: AbortSignal): WireStatus {
  if (signal?.aborted) {
    const abortReason: unknown = signal.reason;
    if (abortReason instanceof VoiceError) return statusOf(abortReason);
    return statusOf(new VoiceError(Reason.Cancelled, 'the call was cancelled'));
  }
  if (error instanceof VoiceError) return statusOf(error);
  // A ConnectError that is not ours comes from the protocol code of a transport (a message too
  // large, an undecodable body, a malformed timeout): its code stands, with the catalogue's reason
  // for that code.
  const passed = error instanceof ConnectError ? reasonOfCode[error.code] : undefined;
  if (error instanceof ConnectError && passed !== undefined) {
    return {
      code: error.code,
      message: bounded(error.rawMessage),
      reason: passed,
      retryAfterMs: undefined,
      info: {},
      unexpected: false,
    };
  }
  return {
    code: Code.Internal,
    message: 'internal error',
    reason: Reason.Internal,
    retryAfterMs: undefined,
    info: {},
    unexpected: true,
  };
}

/**
 * Longest status message sent. Messages may quote client input (an unknown voice id, say); a
 * status that outgrows the HTTP/2 header block would never reach the client and would stall the
 * connection.
 */
const MAX_MESSAGE_CHARS = 1024;

function bounded(message: string): string {
  return message.length <= MAX_MESSAGE_CHARS ? message : `${message.slice(0, MAX_MESSAGE_CHARS - 1)}…`;
}

function statusOf(error: VoiceError): WireStatus {
  return {
    code: error.code,
    message: bounded(error.rawMessage),
    reason: error.reason,
    retryAfterMs: error.retryAfterMs,
    info: error.info,
    unexpected: error.reason === Reason.Internal,
  };
}

/** Shorthand for the most common failure: a field outside its allowed values. */
export function invalidArgument(field: string, problem: string): VoiceError {
  return new VoiceError(Reason.InvalidArgument, `${field}: ${problem}`, { info: { field } });
}

/**
 * Audio bytes that cannot be decoded in the declared format. `byteOffset`, where known, is the
 * position in the stream's bytes where decoding failed; it goes out as ErrorInfo metadata too.
 */
export function invalidAudio(problem: string, byteOffset?: number): VoiceError {
  return new VoiceError(Reason.InvalidAudio, `audio: ${problem}`, {
    info: byteOffset === undefined ? { field: 'audio' } : { field: 'audio', byte_offset: String(byteOffset) },
  });
}

/** Throws CANCELLED or DEADLINE_EXCEEDED (as carried by the signal) when the signal has aborted. */
export function throwIfAborted(signal: AbortSignal): void {
  if (!signal.aborted) return;
  const abortReason: unknown = signal.reason;
  if (abortReason instanceof VoiceError) throw abortReason;
  throw new VoiceError(Reason.Cancelled, 'the call was cancelled');
}
