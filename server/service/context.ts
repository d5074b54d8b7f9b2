import type {
  DescMessage,
  DescMethod,
  DescService,
  MessageInitShape,
  MessageShape,
} from '@bufbuild/protobuf';
import type { Logger } from '../observability/logger.js';

/**
 * What a handler knows about its call, whatever the transport (gRPC on the gRPC port; gRPC-Web or
 * Connect on the web port), as the edge (server/edge/) made it: a signal that aborts on cancel,
 * deadline or drain; the request metadata; the peer; the caller.
 */
export interface CallContext {
  /**
   * Aborts when the client cancels, the deadline passes, or a drain's flush budget runs out after its
   * grace (service.drain_flush_seconds); its reason is a VoiceError.
   */
  readonly signal: AbortSignal;
  /**
   * Aborts (reason DRAINING) when a drain's grace period runs out while the call is in progress: stop
   * taking input, finish what was already taken, deliver it, and end with UNAVAILABLE saying how far
   * the call got. `signal` aborts later, when the flush budget is over. Absent outside the edge.
   */
  readonly finishSignal?: AbortSignal | undefined;
  /** When the call must be finished, if the client set a deadline. */
  readonly deadline: Date | undefined;
  /**
   * Request metadata with lower-case keys; binary values and credentials (x-api-key, authorization)
   * are left out.
   */
  readonly metadata: ReadonlyMap<string, string>;
  /** The direct peer as the transport sees it, e.g. "127.0.0.1:53122" or "[::1]:53122". */
  readonly peer: string;
  /** From x-request-id metadata, or generated. */
  readonly requestId: string;
  /** A child logger carrying method, request id and peer. */
  readonly logger: Logger;
  /**
   * Who is calling, once the edge has checked the credentials: the API key's id, or the id of the
   * key behind a client token. Undefined when no credential is required and none was sent.
   */
  readonly caller?: Caller | undefined;
}

/** An authenticated caller. Never the key itself: `id` is safe to log and to compare. */
export interface Caller {
  /** Stable per API key (a digest of it); a client token carries the id of the key that minted it. */
  readonly id: string;
  /** How the caller proved who it is. */
  readonly via: 'api-key' | 'client-token';
  /** The key's name (from the keys file, or derived from its digest): what logs and metrics show. */
  readonly name?: string | undefined;
}

type Input<M extends DescMethod> = MessageShape<M['input']>;
type Output<M extends DescMethod> = MessageInitShape<M['output']>;

export type UnaryHandler<M extends DescMethod> = (request: Input<M>, ctx: CallContext) => Promise<Output<M>>;
export type ServerStreamingHandler<M extends DescMethod> = (
  request: Input<M>,
  ctx: CallContext,
) => AsyncIterable<Output<M>>;
export type ClientStreamingHandler<M extends DescMethod> = (
  requests: AsyncIterable<Input<M>>,
  ctx: CallContext,
) => Promise<Output<M>>;
export type BidiStreamingHandler<M extends DescMethod> = (
  requests: AsyncIterable<Input<M>>,
  ctx: CallContext,
) => AsyncIterable<Output<M>>;

export type MethodHandler<M extends DescMethod> = M['methodKind'] extends 'unary'
  ? UnaryHandler<M>
  : M['methodKind'] extends 'server_streaming'
    ? ServerStreamingHandler<M>
    : M['methodKind'] extends 'client_streaming'
      ? ClientStreamingHandler<M>
      : BidiStreamingHandler<M>;

/** One handler per RPC of a generated service, keyed by the method's local name. */
export type ServiceHandlers<S extends { method: Record<string, DescMethod> }> = {
  [K in keyof S['method']]: MethodHandler<S['method'][K]>;
};

/** A service and its handlers, ready to be served by a transport. */
export interface ServiceRegistration {
  readonly service: DescService;
  readonly handlers: Readonly<Record<string, unknown>>;
}

export function registration<S extends DescService & { method: Record<string, DescMethod> }>(
  service: S,
  handlers: ServiceHandlers<S>,
): ServiceRegistration {
  return { service, handlers };
}

export type { DescMessage };
