import { isIPv6 } from 'node:net';
import { create, type DescMethod, type DescService, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, createContextKey, type HandlerContext } from '@connectrpc/connect';
import { FORWARDED_FOR_HEADER } from '../../edge/addresses.js';
import { type Edge, type EdgeCall, type Protocol, REQUEST_ID_HEADER } from '../../edge/edge.js';
import { errorDetails, errorMetadata } from '../../edge/wire-status.js';
import type { WireStatus } from '../../errors.js';
import { ErrorInfoSchema, RetryInfoSchema } from '../../gen/google/rpc/error_details_pb.js';
import type { CallContext, ServiceRegistration } from '../../service/context.js';
import { abortable } from '../abortable.js';

/** The HTTP request behind a call: its socket's address, and the edge call once there is one. */
export interface Connection {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  call: EdgeCall | undefined;
}

/** Set by the web server for every request (connect-node's contextValues). */
export const CONNECTION = createContextKey<Connection | undefined>(undefined, {
  description: 'cortex-voice: the request connection',
});

/** The edge's admission of a call, and whether its handler has started. */
interface Admission {
  readonly call: EdgeCall;
  started: boolean;
}

const ADMISSION = createContextKey<Admission | undefined>(undefined, {
  description: 'cortex-voice: the edge admission',
});

/**
 * connect-es's request gate: runs once the request headers are in, before any of the body is read,
 * so a refused call costs nothing more. It opens the call at the edge, which refuses it or admits
 * it; an admitted call's end is reported back from its handler or, if connect-es ends it before the
 * handler runs (an undecodable body, a client gone), from the context's signal.
 */
export function createRequestGate(edge: Edge): (context: HandlerContext) => void {
  return (context) => {
    const connection = context.values.get(CONNECTION);
    const timeoutMs = context.timeoutMs();
    const forwardedFor = context.requestHeader.get(FORWARDED_FOR_HEADER);
    const call = edge.open({
      protocol: context.protocolName as Protocol,
      service: context.service.typeName,
      method: context.method.name,
      kind: context.method.methodKind,
      metadata: textHeaders(context.requestHeader),
      forwardedFor: forwardedFor === null ? [] : [forwardedFor],
      remoteAddress: connection?.remoteAddress,
      peer: peerOf(connection),
      deadline: timeoutMs === undefined ? undefined : new Date(Date.now() + timeoutMs),
    });
    context.responseHeader.set(REQUEST_ID_HEADER, call.requestId);
    if (connection !== undefined) connection.call = call;
    if (call.refusal !== undefined) throw wireError(call.refusal);
    const admission: Admission = { call, started: false };
    context.values.set(ADMISSION, admission);
    // connect-es aborts this signal when the call ends, however it ends, with the error if any.
    const onEnd = () => {
      const reason: unknown = context.signal.reason;
      const protocolError =
        reason instanceof ConnectError &&
        reason.code !== Code.Canceled &&
        reason.code !== Code.DeadlineExceeded;
      if (!admission.started && protocolError) {
        const status = call.status(reason);
        call.end(status);
        // connect-es aborts with the very error it is about to send (an undecodable or oversized
        // request, a malformed timeout): it goes out with our details too.
        if (reason.findDetails(ErrorInfoSchema).length === 0) reason.details.push(...wireDetails(status));
      } else call.clientGone();
    };
    if (context.signal.aborted) onEnd();
    else context.signal.addEventListener('abort', onEnd, { once: true });
  };
}

/**
 * The handlers of a registration as a connect-es service implementation: each runs the
 * transport-neutral handler with the edge's context, counts messages, and turns whatever it
 * throws into the one wire status (code, message, reason and retry hint) the gRPC port would send.
 */
export function webImplementation(registration: ServiceRegistration): Record<string, unknown> {
  const implementation: Record<string, unknown> = {};
  for (const method of registration.service.methods) {
    const handler = registration.handlers[method.localName];
    if (typeof handler !== 'function') {
      throw new Error(`no handler for ${registration.service.typeName}.${method.name}`);
    }
    implementation[method.localName] = adaptMethod(registration.service, method, handler as Handler);
  }
  return implementation;
}

type Handler = (input: unknown, ctx: CallContext) => unknown;
type Message = Parameters<typeof toBinary>[1];

function adaptMethod(service: DescService, method: DescMethod, invoke: Handler) {
  const enter = (context: HandlerContext) => {
    const admission = context.values.get(ADMISSION);
    if (admission === undefined) {
      throw new Error(`${service.typeName}/${method.name} reached its handler without passing the edge`);
    }
    admission.started = true;
    return { call: admission.call, ctx: admission.call.context() };
  };
  const output = (call: EdgeCall, value: unknown) => {
    const message = create(method.output, value as never);
    call.sent(toBinary(method.output, message).byteLength);
    return message;
  };
  const requests = (call: EdgeCall, ctx: CallContext, input: AsyncIterable<Message>) =>
    (async function* () {
      for await (const request of abortable(input[Symbol.asyncIterator](), ctx.signal)) {
        call.received(toBinary(method.input, request).byteLength);
        yield request;
      }
    })();
  const single = async (call: EdgeCall, ctx: CallContext, value: unknown) => {
    const message = output(call, await value);
    if (ctx.signal.aborted) throw ctx.signal.reason;
    call.end();
    return message;
  };
  async function* stream(call: EdgeCall, ctx: CallContext, responses: AsyncIterable<unknown>) {
    for await (const response of responses) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      yield output(call, response);
    }
    if (ctx.signal.aborted) throw ctx.signal.reason;
    call.end();
  }

  switch (method.methodKind) {
    case 'unary':
      return async (request: Message, context: HandlerContext) => {
        const { call, ctx } = enter(context);
        call.received(toBinary(method.input, request).byteLength);
        try {
          return await single(call, ctx, invoke(request, ctx));
        } catch (error) {
          throw fail(call, error);
        } finally {
          call.settle();
        }
      };
    case 'server_streaming':
      return async function* (request: Message, context: HandlerContext) {
        const { call, ctx } = enter(context);
        call.received(toBinary(method.input, request).byteLength);
        try {
          yield* stream(call, ctx, invoke(request, ctx) as AsyncIterable<unknown>);
        } catch (error) {
          throw fail(call, error);
        } finally {
          call.settle();
        }
      };
    case 'client_streaming':
      return async (input: AsyncIterable<Message>, context: HandlerContext) => {
        const { call, ctx } = enter(context);
        try {
          return await single(call, ctx, invoke(requests(call, ctx, input), ctx));
        } catch (error) {
          throw fail(call, error);
        } finally {
          call.settle();
        }
      };
    case 'bidi_streaming':
      return async function* (input: AsyncIterable<Message>, context: HandlerContext) {
        const { call, ctx } = enter(context);
        try {
          yield* stream(call, ctx, invoke(requests(call, ctx, input), ctx) as AsyncIterable<unknown>);
        } catch (error) {
          throw fail(call, error);
        } finally {
          call.settle();
        }
      };
  }
}

/** Records a failed call and gives the error connect-es sends for it. */
function fail(call: EdgeCall, error: unknown): ConnectError {
  const status = call.status(error);
  call.end(status);
  return wireError(status);
}

/**
 * A failed call's status as connect-es sends it: the code and message; a google.rpc.ErrorInfo and,
 * when a retry makes sense, a google.rpc.RetryInfo as details (gRPC-Web puts them in
 * grpc-status-details-bin, Connect in the error's JSON); the retry pushback as metadata (gRPC-Web
 * trailers; Connect error headers or end-of-stream metadata).
 */
export function wireError(status: WireStatus): ConnectError {
  // The request id is a response header already (the gate sets it), which every protocol keeps.
  return new ConnectError(
    status.message,
    status.code,
    new Headers(errorMetadata(status)),
    wireDetails(status),
  );
}

/** Details a server raises (connect-es does not export the type). */
type OutgoingDetails = NonNullable<ConstructorParameters<typeof ConnectError>[3]>;

/** A status's ErrorInfo and RetryInfo, as connect-es details it encodes for each protocol. */
function wireDetails(status: WireStatus): OutgoingDetails {
  const { errorInfo, retryInfo } = errorDetails(status);
  return [
    { desc: ErrorInfoSchema, value: errorInfo },
    ...(retryInfo === undefined ? [] : [{ desc: RetryInfoSchema, value: retryInfo }]),
  ];
}

/** Request headers with text values, lower-case keys (as Headers keeps them). */
function textHeaders(headers: Headers): Map<string, string> {
  const result = new Map<string, string>();
  headers.forEach((value, key) => {
    if (!key.endsWith('-bin')) result.set(key, value);
  });
  return result;
}

/** The peer as grpc-js writes it ("127.0.0.1:53122", "[::1]:53122"), so logs read the same for both ports. */
function peerOf(connection: Connection | undefined): string {
  const address = connection?.remoteAddress;
  if (address === undefined) return 'unknown';
  const port = connection?.remotePort ?? 0;
  return isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}
