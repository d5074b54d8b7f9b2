import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { create, type DescMethod, type DescService, fromBinary, toBinary } from '@bufbuild/protobuf';
import type {
  status as GrpcStatus,
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Metadata,
  ServerErrorResponse,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { Reason, toStatus, VoiceError } from '../../errors.js';
import type { Logger } from '../../observability/logger.js';
import type { CallContext, ServiceRegistration } from '../../service/context.js';
import { readMessages } from './read-messages.js';
import { errorTrailers } from './trailers.js';

export const REQUEST_ID_HEADER = 'x-request-id';
/**
 * Set by the security interceptor on the incoming metadata: the client's address as resolved from
 * the connection and trusted proxies' x-forwarded-for, for the call log. A client's own value is
 * overwritten.
 */
export const CLIENT_ADDRESS_METADATA = 'cortex-client-address';
/** A cancel this close to the client's deadline is the deadline (the client's timer fires first). */
export const DEADLINE_SLACK_MS = 50;

/** Calls in progress, so a drain can cancel those still running when the grace period ends. */
export class ActiveCalls {
  readonly #controllers = new Set<AbortController>();

  get size(): number {
    return this.#controllers.size;
  }

  add(controller: AbortController): () => void {
    this.#controllers.add(controller);
    return () => this.#controllers.delete(controller);
  }

  abortAll(reason: VoiceError): void {
    for (const controller of this.#controllers) controller.abort(reason);
  }
}

export interface AdapterOptions {
  readonly logger: Logger;
  readonly activeCalls: ActiveCalls;
  /** Deadline for unary calls whose client sets none, in milliseconds. */
  readonly defaultUnaryTimeoutMs: number;
  /** Longest a streaming call may last, in milliseconds. */
  readonly maxStreamDurationMs: number;
}

type AnyCall = {
  readonly metadata: Metadata;
  getPeer(): string;
  getDeadline(): Date | number;
  on(event: 'cancelled', listener: () => void): unknown;
  readonly cancelled: boolean;
};

/** Turns transport-neutral handlers into a grpc-js service implementation. */
export function adaptService(
  registration: ServiceRegistration,
  options: AdapterOptions,
): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = {};
  for (const method of registration.service.methods) {
    const handler = registration.handlers[method.localName];
    if (typeof handler !== 'function') {
      throw new Error(`no handler for ${registration.service.typeName}.${method.name}`);
    }
    implementation[method.localName] = adaptMethod(registration.service, method, handler as Handler, options);
  }
  return implementation;
}

type Handler = (input: unknown, ctx: CallContext) => unknown;

function adaptMethod(service: DescService, method: DescMethod, invoke: Handler, options: AdapterOptions) {
  switch (method.methodKind) {
    case 'unary':
      return ((call, callback) => {
        const scope = openScope(service, method, call, options, false);
        decodeOne(method, call.request)
          .then((request) => invoke(request, scope.ctx) as Promise<unknown>)
          .then(
            (response) => {
              if (scope.ctx.signal.aborted) throw scope.ctx.signal.reason;
              callback(null, encode(method, response));
            },
            (error: unknown) => callback(errorResponse(error, scope)),
          )
          .catch((error: unknown) => callback(errorResponse(error, scope)))
          .finally(scope.close);
      }) satisfies handleUnaryCall<Buffer, Buffer>;
    case 'server_streaming':
      return ((call) => {
        const scope = openScope(service, method, call, options, true);
        decodeOne(method, call.request)
          .then((request) =>
            writeAll(call, method, invoke(request, scope.ctx) as AsyncIterable<unknown>, scope),
          )
          .then(
            () => call.end(),
            (error: unknown) => call.emit('error', errorResponse(error, scope)),
          )
          .finally(scope.close);
      }) satisfies handleServerStreamingCall<Buffer, Buffer>;
    case 'client_streaming':
      return ((call, callback) => {
        const scope = openScope(service, method, call, options, true);
        const requests = readAll(call, method, scope.ctx.signal);
        Promise.resolve()
          .then(() => invoke(requests, scope.ctx) as Promise<unknown>)
          .then(
            (response) => callback(null, encode(method, response)),
            (error: unknown) => callback(errorResponse(error, scope)),
          )
          .finally(scope.close);
      }) satisfies handleClientStreamingCall<Buffer, Buffer>;
    case 'bidi_streaming':
      return ((call) => {
        const scope = openScope(service, method, call, options, true);
        const requests = readAll(call, method, scope.ctx.signal);
        Promise.resolve()
          .then(() => writeAll(call, method, invoke(requests, scope.ctx) as AsyncIterable<unknown>, scope))
          .then(
            () => call.end(),
            (error: unknown) => call.emit('error', errorResponse(error, scope)),
          )
          .finally(scope.close);
      }) satisfies handleBidiStreamingCall<Buffer, Buffer>;
  }
}

interface CallScope {
  readonly ctx: CallContext;
  readonly close: () => void;
}

function openScope(
  service: DescService,
  method: DescMethod,
  call: AnyCall,
  options: AdapterOptions,
  streaming: boolean,
): CallScope {
  const controller = new AbortController();
  const metadata = textMetadata(call.metadata);
  const requestId = metadata.get(REQUEST_ID_HEADER) ?? randomUUID();
  const peer = call.getPeer();
  const clientDeadline = toDate(call.getDeadline());
  // A stream ends at the earlier of the client's deadline and the server's stream limit; a unary
  // call honours the client's deadline, and only one without a deadline gets service.timeout.
  const limitMs = streaming ? options.maxStreamDurationMs : options.defaultUnaryTimeoutMs;
  const serverDeadline = new Date(Date.now() + limitMs);
  const deadline =
    clientDeadline && (!streaming || clientDeadline < serverDeadline) ? clientDeadline : serverDeadline;
  const timer = setTimeout(
    () => {
      const seconds = limitMs / 1000;
      controller.abort(
        deadline === clientDeadline
          ? new VoiceError(Reason.DeadlineExceeded, "the client's deadline passed")
          : streaming
            ? new VoiceError(
                Reason.LimitExceeded,
                `the stream reached service.max_stream_duration_seconds (${seconds} s)`,
              )
            : new VoiceError(
                Reason.DeadlineExceeded,
                `the call took longer than service.timeout (${seconds} s); set a deadline to allow more`,
              ),
      );
    },
    Math.max(0, deadline.getTime() - Date.now()),
  );
  timer.unref();
  // A deadline expiry reaches the server as a cancellation (grpc-js's own timer, or the client's
  // RST_STREAM a moment before the server's clock gets there); tell the two apart by the clock.
  const onCancel = () =>
    controller.abort(
      clientDeadline !== undefined && Date.now() >= clientDeadline.getTime() - DEADLINE_SLACK_MS
        ? new VoiceError(Reason.DeadlineExceeded, "the client's deadline passed")
        : new VoiceError(Reason.Cancelled, 'the client cancelled the call'),
    );
  call.on('cancelled', onCancel);
  if (call.cancelled) onCancel();
  const untrack = options.activeCalls.add(controller);
  const logger = options.logger.child({ method: `${service.typeName}/${method.name}`, requestId, peer });
  return {
    ctx: {
      signal: controller.signal,
      deadline: clientDeadline,
      metadata,
      peer,
      requestId,
      logger,
    },
    close: () => {
      clearTimeout(timer);
      untrack();
      if (!controller.signal.aborted)
        controller.abort(new VoiceError(Reason.Cancelled, 'the call has ended'));
    },
  };
}

function textMetadata(metadata: Metadata): Map<string, string> {
  const result = new Map<string, string>();
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (typeof value === 'string') result.set(key.toLowerCase(), value);
  }
  return result;
}

function toDate(deadline: Date | number): Date | undefined {
  if (deadline instanceof Date) return deadline;
  return Number.isFinite(deadline) ? new Date(deadline) : undefined;
}

async function decodeOne(method: DescMethod, bytes: Buffer): Promise<unknown> {
  return decode(method, bytes);
}

function decode(method: DescMethod, bytes: Buffer): unknown {
  try {
    return fromBinary(method.input, bytes);
  } catch (error) {
    const why = error instanceof Error ? `: ${error.message}` : '';
    throw new VoiceError(
      Reason.InvalidArgument,
      `request is not a valid ${method.input.typeName} message${why}`,
      {
        cause: error,
      },
    );
  }
}

function encode(method: DescMethod, message: unknown): Buffer {
  const bytes = toBinary(method.output, create(method.output, message as never));
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The call's messages, decoded; ends on half-close and stops at once when the signal aborts. */
async function* readAll(stream: Readable, method: DescMethod, signal: AbortSignal): AsyncGenerator<unknown> {
  for await (const bytes of readMessages(stream, signal)) yield decode(method, bytes);
}

interface WritableCall {
  write(chunk: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
  readonly destroyed: boolean;
}

/** Writes every response in order, waiting for 'drain' when the transport's buffer is full. */
async function writeAll(
  call: WritableCall,
  method: DescMethod,
  responses: AsyncIterable<unknown>,
  scope: CallScope,
): Promise<void> {
  const { signal } = scope.ctx;
  const iterator = responses[Symbol.asyncIterator]();
  try {
    while (true) {
      const next = await iterator.next();
      if (next.done) return;
      if (signal.aborted) throw signal.reason;
      if (!call.write(encode(method, next.value))) {
        await once(call as unknown as NodeJS.EventEmitter, 'drain', { signal });
      }
    }
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    await iterator.return?.();
  }
}

function errorResponse(error: unknown, scope: CallScope): ServerErrorResponse {
  const status = toStatus(error, scope.ctx.signal);
  if (status.unexpected) scope.ctx.logger.error({ err: error }, 'call failed unexpectedly');
  return Object.assign(new Error(status.message), {
    code: status.code as number as GrpcStatus,
    details: status.message,
    metadata: errorTrailers(status.code, status.message, status.reason, status.retryAfterMs),
  });
}
