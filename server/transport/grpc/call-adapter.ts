import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { create, type DescMethod, fromBinary, toBinary } from '@bufbuild/protobuf';
import type {
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Metadata,
  ServerErrorResponse,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { EdgeCall } from '../../edge/edge.js';
import { Reason, VoiceError } from '../../errors.js';
import type { CallContext, ServiceRegistration } from '../../service/context.js';
import type { EdgeCalls } from './edge-interceptor.js';
import { grpcError } from './grpc-status.js';
import { readMessages } from './read-messages.js';

export interface AdapterOptions {
  /** Where the edge interceptor left each admitted call. */
  readonly calls: EdgeCalls;
}

type AnyCall = {
  readonly metadata: Metadata;
  on(event: 'cancelled', listener: () => void): unknown;
  readonly cancelled: boolean;
};

/**
 * Turns transport-neutral handlers into a grpc-js service implementation. The edge interceptor has
 * admitted the call and keeps its books; this only decodes, encodes, streams with backpressure and
 * maps errors to statuses.
 */
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
    implementation[method.localName] = adaptMethod(method, handler as Handler, options);
  }
  return implementation;
}

type Handler = (input: unknown, ctx: CallContext) => unknown;

function adaptMethod(method: DescMethod, invoke: Handler, options: AdapterOptions) {
  switch (method.methodKind) {
    case 'unary':
      return ((call, callback) => {
        const scope = openScope(call, options);
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
        const scope = openScope(call, options);
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
        const scope = openScope(call, options);
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
        const scope = openScope(call, options);
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
  readonly edgeCall: EdgeCall;
  readonly close: () => void;
}

/** The handler's side of a call the edge admitted: its context, and cancellation reported back. */
function openScope(call: AnyCall, options: AdapterOptions): CallScope {
  const edgeCall = options.calls.get(call.metadata);
  if (edgeCall === undefined) throw new Error('a call reached its handler without passing the edge');
  const ctx = edgeCall.context();
  // A deadline expiry reaches the server as a cancellation (grpc-js's own timer, or the client's
  // RST_STREAM a moment before the server's clock gets there); the edge tells the two apart.
  const onCancel = () => edgeCall.clientGone();
  call.on('cancelled', onCancel);
  if (call.cancelled) onCancel();
  return { ctx, edgeCall, close: edgeCall.settle };
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
  return grpcError(scope.edgeCall.status(error));
}
