import {
  Metadata,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerMethodDefinition,
} from '@grpc/grpc-js';
import { AUTHORIZATION_HEADER } from '../../edge/access-control.js';
import { FORWARDED_FOR_HEADER } from '../../edge/addresses.js';
import { API_KEY_HEADER } from '../../edge/api-keys.js';
import { type Edge, type EdgeCall, type MethodKind, REQUEST_ID_HEADER } from '../../edge/edge.js';
import { failedStatusTrailers, grpcStatus } from './grpc-status.js';

/**
 * The edge call of each admitted call, keyed by the request metadata object grpc-js hands on to
 * the handler: the call adapter finds its call here, and nothing travels in metadata a client
 * could have written.
 */
export type EdgeCalls = WeakMap<Metadata, EdgeCall>;

/**
 * The gRPC port's only interceptor: every call, whatever its service (ours, health, reflection),
 * goes through the edge when its metadata arrives, and reports its messages, its cancellation and
 * its status back. A refused call ends here, before any handler runs.
 */
export function createEdgeInterceptor(edge: Edge, calls: EdgeCalls): ServerInterceptor {
  return (descriptor: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    const [, service = '', method = ''] = descriptor.path.split('/');
    let opened: EdgeCall | undefined;
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const edgeCall = edge.open({
              protocol: 'grpc',
              service,
              method,
              kind: methodKind(descriptor),
              metadata: textMetadata(metadata),
              forwardedFor: textValues(metadata, FORWARDED_FOR_HEADER),
              remoteAddress: call.getConnectionInfo().remoteAddress,
              peer: call.getPeer(),
              deadline: toDate(call.getDeadline()),
            });
            opened = edgeCall;
            // Credentials stop at the edge: nothing after it can log or forward them.
            metadata.remove(API_KEY_HEADER);
            metadata.remove(AUTHORIZATION_HEADER);
            metadata.set(REQUEST_ID_HEADER, edgeCall.requestId);
            if (edgeCall.refusal !== undefined) {
              call.sendStatus(withRequestId(grpcStatus(edgeCall.refusal), edgeCall.requestId));
              return;
            }
            calls.set(metadata, edgeCall);
            nextMetadata(metadata);
          },
          onReceiveMessage: (message, nextMessage) => {
            opened?.received(Buffer.isBuffer(message) ? message.length : 0);
            nextMessage(message);
          },
          // grpc-js reports its own deadline expiry, and the end of every call, as a cancellation;
          // the edge tells a deadline from a cancel by the clock, and ignores it after the status.
          onCancel: () => opened?.clientGone(),
        });
      },
      sendMetadata: (metadata, next) => {
        if (opened !== undefined) metadata.set(REQUEST_ID_HEADER, opened.requestId);
        next(metadata);
      },
      sendMessage: (message, next) => {
        opened?.sent(byteLength(message, descriptor.responseSerialize));
        next(message);
      },
      sendStatus: (status, next) => {
        let sent = status;
        let reason: string | undefined;
        if (status.code !== 0) {
          const failed = failedStatusTrailers(status.code, status.details, status.metadata);
          sent = { ...status, metadata: failed.metadata };
          reason = failed.reason;
        }
        opened?.end({ code: status.code, message: status.details, reason });
        next(opened === undefined ? sent : withRequestId(sent, opened.requestId));
      },
    });
  };
}

/** Failed calls carry the request id too: their status may be the only thing the client gets. */
type StatusWithMetadata = Parameters<ServerInterceptingCallInterface['sendStatus']>[0];

function withRequestId(status: StatusWithMetadata, requestId: string): StatusWithMetadata {
  const metadata = status.metadata ?? new Metadata();
  metadata.set(REQUEST_ID_HEADER, requestId);
  return { ...status, metadata };
}

function methodKind(descriptor: ServerMethodDefinition<unknown, unknown>): MethodKind {
  if (descriptor.requestStream && descriptor.responseStream) return 'bidi_streaming';
  if (descriptor.requestStream) return 'client_streaming';
  if (descriptor.responseStream) return 'server_streaming';
  return 'unary';
}

function textMetadata(metadata: Metadata): Map<string, string> {
  const result = new Map<string, string>();
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (typeof value === 'string') result.set(key.toLowerCase(), value);
  }
  return result;
}

function textValues(metadata: Metadata, key: string): string[] {
  return metadata.get(key).filter((value): value is string => typeof value === 'string');
}

function toDate(deadline: Date | number): Date | undefined {
  if (deadline instanceof Date) return deadline;
  return Number.isFinite(deadline) ? new Date(deadline) : undefined;
}

/** Size of a message: ours cross grpc-js as bytes; others' (health, reflection) are measured when sent. */
function byteLength(message: unknown, serialize: ((value: unknown) => Buffer) | undefined): number {
  if (Buffer.isBuffer(message)) return message.length;
  if (!serialize) return 0;
  try {
    return serialize(message).length;
  } catch {
    return 0;
  }
}
