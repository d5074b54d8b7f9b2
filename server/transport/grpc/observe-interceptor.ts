import { randomUUID } from 'node:crypto';
import {
  status as GrpcStatus,
  Metadata,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerMethodDefinition,
} from '@grpc/grpc-js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import { CLIENT_ADDRESS_METADATA, DEADLINE_SLACK_MS, REQUEST_ID_HEADER } from './call-adapter.js';
import { ERROR_REASON_TRAILER, errorTrailers } from './trailers.js';

const CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(GrpcStatus)
    .filter(([, value]) => typeof value === 'number')
    .map(([name, value]) => [value as number, name]),
);

export function codeName(code: number): string {
  return CODE_NAMES[code] ?? String(code);
}

export interface ObserveOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** True once the server drains: new calls other than health checks are refused with UNAVAILABLE. */
  readonly isDraining: () => boolean;
  /** Services always answered, even while draining or full (health, so probes see the truth). */
  readonly alwaysServed: ReadonlySet<string>;
  /** Calls served at once (service.max_concurrent_requests); beyond it RESOURCE_EXHAUSTED. */
  readonly maxConcurrentCalls: number;
}

/**
 * The one place every call passes through, whatever service it belongs to: gives it a request id,
 * refuses it while draining, and records its metrics and its log line when it ends.
 */
export function createObserveInterceptor(options: ObserveOptions): ServerInterceptor {
  const { logger, metrics } = options;
  let callsInProgress = 0;
  return (descriptor: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    const { service, method } = splitPath(descriptor.path);
    const type = grpcType(descriptor);
    const labels = { grpc_type: type, grpc_service: service, grpc_method: method };
    const startedAt = process.hrtime.bigint();
    let requestId = '';
    // Later interceptors add the resolved client address to this same metadata.
    let incoming: Metadata | undefined;
    let bytesIn = 0;
    let bytesOut = 0;
    let finished = false;
    let counted = false;

    const finish = (code: number, details: string, reason: string | undefined) => {
      if (finished) return;
      finished = true;
      if (counted) callsInProgress -= 1;
      const seconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
      metrics.handled.inc({ ...labels, grpc_code: codeName(code) });
      metrics.handlingSeconds.observe(labels, seconds);
      metrics.activeStreams.dec({ grpc_service: service, grpc_method: method });
      const record = {
        method: `${service}/${method}`,
        code: codeName(code),
        durationMs: Math.round(seconds * 1e4) / 10,
        peer: call.getPeer(),
        client: incoming?.get(CLIENT_ADDRESS_METADATA)[0],
        requestId,
        bytesIn,
        bytesOut,
        ...(code === GrpcStatus.OK ? {} : { message: details, reason }),
      };
      if (code === GrpcStatus.INTERNAL || code === GrpcStatus.UNKNOWN) logger.error(record, 'call finished');
      else logger.info(record, 'call finished');
    };

    /** Ends the call before it reaches the next interceptor, recorded like any other call. */
    const refuse = (label: string, code: GrpcStatus, reason: string, details: string) => {
      metrics.rejectedCalls.inc({ reason: label });
      finish(code, details, reason);
      const retryAfterMs = code === GrpcStatus.RESOURCE_EXHAUSTED ? 1000 : undefined;
      call.sendStatus(
        withRequestId(
          { code, details, metadata: errorTrailers(code, details, reason, retryAfterMs) },
          requestId,
        ),
      );
    };

    return new ServerInterceptingCall(call, {
      start: (next) => {
        metrics.started.inc(labels);
        metrics.activeStreams.inc({ grpc_service: service, grpc_method: method });
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            incoming = metadata;
            metadata.remove(CLIENT_ADDRESS_METADATA);
            const given = metadata.get(REQUEST_ID_HEADER)[0];
            requestId =
              typeof given === 'string' && given.length > 0 && given.length <= 128 ? given : randomUUID();
            metadata.set(REQUEST_ID_HEADER, requestId);
            if (!options.alwaysServed.has(service)) {
              if (options.isDraining()) {
                refuse(
                  'draining',
                  GrpcStatus.UNAVAILABLE,
                  'DRAINING',
                  'the server is shutting down; retry on another instance',
                );
                return;
              }
              if (callsInProgress >= options.maxConcurrentCalls) {
                refuse(
                  'max_concurrent_requests',
                  GrpcStatus.RESOURCE_EXHAUSTED,
                  'OVERLOADED',
                  `the server is serving its maximum of ${options.maxConcurrentCalls} calls (service.max_concurrent_requests); retry later`,
                );
                return;
              }
              callsInProgress += 1;
              counted = true;
            }
            nextMetadata(metadata);
          },
          onReceiveMessage: (message, nextMessage) => {
            bytesIn += byteLength(message, undefined);
            metrics.messagesReceived.inc(labels);
            nextMessage(message);
          },
          // grpc-js reports its own deadline expiry, and the end of every call, as a cancellation.
          onCancel: () => {
            const deadline = Number(call.getDeadline());
            const expired = Number.isFinite(deadline) && deadline <= Date.now() + DEADLINE_SLACK_MS;
            if (expired)
              finish(GrpcStatus.DEADLINE_EXCEEDED, "the client's deadline passed", 'DEADLINE_EXCEEDED');
            else finish(GrpcStatus.CANCELLED, 'cancelled by the client', undefined);
          },
        });
      },
      sendMetadata: (metadata, next) => {
        metadata.set(REQUEST_ID_HEADER, requestId);
        next(metadata);
      },
      sendMessage: (message, next) => {
        bytesOut += byteLength(message, descriptor.responseSerialize);
        metrics.messagesSent.inc(labels);
        next(message);
      },
      sendStatus: (status, next) => {
        const reason = status.metadata?.get(ERROR_REASON_TRAILER)[0];
        finish(status.code, status.details, typeof reason === 'string' ? reason : undefined);
        next(withRequestId(status, requestId));
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

function splitPath(path: string): { service: string; method: string } {
  const [, service = '', method = ''] = path.split('/');
  return { service, method };
}

function grpcType(descriptor: ServerMethodDefinition<unknown, unknown>): string {
  if (descriptor.requestStream && descriptor.responseStream) return 'bidi_stream';
  if (descriptor.requestStream) return 'client_stream';
  if (descriptor.responseStream) return 'server_stream';
  return 'unary';
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
