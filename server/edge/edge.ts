import { randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { Reason, toStatus, VoiceError, type WireStatus } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { CallContext, Caller } from '../service/context.js';
import { AUTHORIZATION_HEADER, createAccessControl, type TokenVerifier } from './access-control.js';
import { ActiveCalls } from './active-calls.js';
import { API_KEY_HEADER, type ApiKeys, loadApiKeys } from './api-keys.js';
import { codeName } from './wire-status.js';

/** Request metadata naming the call for logs; echoed in the response headers and trailers. */
export const REQUEST_ID_HEADER = 'x-request-id';
/** A cancel this close to the client's deadline is the deadline (the client's timer fires first). */
export const DEADLINE_SLACK_MS = 50;
/** The standard health service: answered even while draining or full, and never held by a drain. */
export const HEALTH_SERVICE = 'grpc.health.v1.Health';
/** How long a drain waits for cancelled calls to wind down after the grace period. */
const SETTLE_MS = 2000;

/** The protocol a call arrived in: native gRPC on the gRPC port, gRPC-Web or Connect on the web port. */
export type Protocol = 'grpc' | 'grpc-web' | 'connect';
export type MethodKind = 'unary' | 'server_streaming' | 'client_streaming' | 'bidi_streaming';

/** A call as a transport hands it to the edge, before anything of it has been read. */
export interface IncomingCall {
  readonly protocol: Protocol;
  /** "cortex.voice.v1.Synthesis" */
  readonly service: string;
  /** "SynthesizeText" */
  readonly method: string;
  readonly kind: MethodKind;
  /** Request metadata with lower-case keys, text values only (the first of each key). */
  readonly metadata: ReadonlyMap<string, string>;
  /** Every x-forwarded-for value, in order. */
  readonly forwardedFor: readonly string[];
  /** The direct peer's address as the socket reports it ("127.0.0.1", "::ffff:127.0.0.1"). */
  readonly remoteAddress: string | undefined;
  /** The peer for logs, as grpc-js writes it: "127.0.0.1:53122", "[::1]:53122". */
  readonly peer: string;
  /** The client's deadline, if it set one. */
  readonly deadline: Date | undefined;
}

/** What ended a call, for its metrics and its log line; no status means OK. */
export interface CallOutcome {
  readonly code: number;
  readonly message?: string | undefined;
  readonly reason?: string | undefined;
}

/**
 * One call, from the moment its headers arrive until its status goes out. The transport reports
 * what it sees (messages, the client going away, the final status); the edge keeps the books.
 */
export interface EdgeCall {
  readonly requestId: string;
  /** Set when the edge refused the call: the transport sends this status and nothing else. */
  readonly refusal: WireStatus | undefined;
  /**
   * The handler's context: a signal that aborts on cancel, deadline, stream limit or at the end of
   * a drain's flush; a finish signal that aborts at the end of a drain's grace; the request metadata
   * without credentials; the caller. Made on first use, which counts the call
   * as in progress for drain.
   */
  context(): CallContext;
  received(bytes: number): void;
  sent(bytes: number): void;
  /** The client cancelled or its deadline passed (told apart by the clock): aborts and ends the call. */
  clientGone(): void;
  /** The status to send for an error a handler threw; logs the cause of an unexpected one. */
  status(error: unknown): WireStatus;
  /** The handler has returned: its signal aborts and a drain stops waiting for it. */
  settle(): void;
  /** Records the call's end (metrics, call log) and releases its quotas; the first report wins. */
  end(outcome?: CallOutcome): void;
}

export interface Edge {
  open(call: IncomingCall): EdgeCall;
  readonly draining: boolean;
  /** Handlers in progress, on every transport. */
  readonly activeCalls: number;
  /**
   * New calls other than health checks are refused with UNAVAILABLE from now on; calls in
   * progress get `graceMs` to finish. Those still running are then told to finish (their
   * `finishSignal` aborts: take no more input, deliver what was taken) and get `flushMs`
   * (service.drain_flush_seconds by default) before they are cancelled. Resolves once they have
   * all ended (or a short settling time has passed); the transports then close. Later calls share
   * the first.
   */
  drain(graceMs: number, flushMs?: number): Promise<void>;
  /**
   * Charges seconds of audio received on a call to its caller's audio budget
   * (max_audio_seconds_per_minute); `ctx` is the call's context as the edge made it.
   */
  chargeAudio(ctx: CallContext, seconds: number): void;
}

export interface EdgeOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Defaults to the keys of the config (security.api_keys, security.api_keys_file). */
  readonly apiKeys?: ApiKeys;
  /** Verifies `authorization: Bearer` client tokens; without it, a bearer token is refused. */
  readonly tokens?: TokenVerifier | undefined;
  /**
   * Method paths whose calls continue a call already admitted rather than start one (the audio
   * chunks of a transcription session): the per-minute rate does not count them, and a drain lets
   * them through, so that what is in flight can finish within the grace period. Every other check
   * applies.
   */
  readonly continuations?: readonly string[] | undefined;
  /** Method paths that send audio for transcription: refused while the caller's audio budget is spent. */
  readonly audioMethods?: readonly string[] | undefined;
}

/**
 * The edge policy of every transport, written once: request ids, drain and the call cap, client
 * address, credentials, rate and stream limits, deadlines, call metrics (labelled with the
 * protocol) and one log line per call. The gRPC and web transports call it and do nothing of this
 * themselves.
 */
export function createEdge(options: EdgeOptions): Edge {
  const { config, logger, metrics } = options;
  const access = createAccessControl({
    security: config.security,
    apiKeys: options.apiKeys ?? loadApiKeys(config.security),
    tokens: options.tokens,
    unmetered: options.continuations,
    audioMethods: options.audioMethods,
    metrics,
  });
  const audioCharges = new WeakMap<CallContext, (seconds: number) => void>();
  const continuations = new Set(options.continuations ?? []);
  const active = new ActiveCalls();
  const maxCalls = config.service.max_concurrent_requests;
  const unaryTimeoutMs = config.service.timeout * 1000;
  const streamLimitMs = config.service.max_stream_duration_seconds * 1000;
  let callsInProgress = 0;
  let drained: Promise<void> | undefined;

  async function drainCalls(graceMs: number, flushMs: number): Promise<void> {
    if (await active.whenEmpty(graceMs)) return;
    logger.warn(
      { calls: active.size, graceMs, flushMs },
      'drain grace period over; calls in flight take no more input and finish',
    );
    active.finishAll(
      new VoiceError(Reason.Draining, 'the server is shutting down; this call takes no more input'),
    );
    if (await active.whenEmpty(flushMs)) {
      logger.info({ flushMs }, 'drain flush done; every call has ended');
      return;
    }
    logger.warn({ calls: active.size, flushMs }, 'drain flush budget over; cancelling calls in flight');
    active.abortAll(
      new VoiceError(Reason.Draining, 'the server is shutting down; retry on another instance'),
    );
    await active.whenEmpty(SETTLE_MS);
  }

  function open(incoming: IncomingCall): EdgeCall {
    const { service, method, kind, protocol, peer } = incoming;
    const startedAt = performance.now();
    const path = `/${service}/${method}`;
    const streaming = kind !== 'unary';
    const labels = { grpc_type: grpcType(kind), grpc_service: service, grpc_method: method, protocol };
    metrics.started.inc(labels);
    metrics.activeStreams.inc({ grpc_service: service, grpc_method: method });
    const given = incoming.metadata.get(REQUEST_ID_HEADER);
    const requestId = given !== undefined && /^[\x20-\x7e]{1,128}$/.test(given) ? given : randomUUID();
    const callLogger = logger.child({ method: `${service}/${method}`, requestId, peer, protocol });
    const alwaysServed = service === HEALTH_SERVICE;

    let ended = false;
    let counted = false;
    let bytesIn = 0;
    let bytesOut = 0;
    let caller: Caller | undefined;
    let client: string | undefined;
    let release = () => {};
    let chargeAudio = (_seconds: number) => {};
    let refusal: WireStatus | undefined;
    let ctx: CallContext | undefined;
    let controller: AbortController | undefined;
    let timer: NodeJS.Timeout | undefined;
    let untrack = () => {};
    /** Why the call ended before its handler asked for a context, if it did. */
    let goneReason: VoiceError | undefined;

    const settle = () => {
      clearTimeout(timer);
      untrack();
      if (controller !== undefined && !controller.signal.aborted) {
        controller.abort(new VoiceError(Reason.Cancelled, 'the call has ended'));
      }
    };

    const end = (outcome: CallOutcome = { code: 0 }) => {
      if (ended) return;
      ended = true;
      if (counted) callsInProgress -= 1;
      release();
      settle();
      const seconds = (performance.now() - startedAt) / 1000;
      const code = codeName(outcome.code);
      metrics.handled.inc({ ...labels, grpc_code: code });
      metrics.handlingSeconds.observe(labels, seconds);
      metrics.activeStreams.dec({ grpc_service: service, grpc_method: method });
      const record = {
        method: `${service}/${method}`,
        protocol,
        code,
        durationMs: Math.round(seconds * 1e4) / 10,
        peer,
        client,
        requestId,
        // The key's name, never its digest: ids stay inside the server.
        ...(caller === undefined ? {} : { caller: caller.name }),
        bytesIn,
        bytesOut,
        ...(outcome.code === 0 ? {} : { message: outcome.message, reason: outcome.reason }),
      };
      if (code === 'INTERNAL' || code === 'UNKNOWN') logger.error(record, 'call finished');
      else logger.info(record, 'call finished');
    };

    const refuse = (error: VoiceError, metric: string) => {
      metrics.rejectedCalls.inc({ reason: metric });
      refusal = toStatus(error);
      end(refusal);
    };

    if (!alwaysServed) {
      if (drained !== undefined && !continuations.has(path)) {
        refuse(
          new VoiceError(Reason.Draining, 'the server is shutting down; retry on another instance'),
          'draining',
        );
      } else if (callsInProgress >= maxCalls) {
        refuse(
          new VoiceError(
            Reason.Overloaded,
            `the server is serving its maximum of ${maxCalls} calls (service.max_concurrent_requests); retry later`,
            { retryAfterMs: 1000, info: { limit: 'service.max_concurrent_requests' } },
          ),
          'max_concurrent_requests',
        );
      } else {
        callsInProgress += 1;
        counted = true;
      }
    }
    if (refusal === undefined) {
      const verdict = access.admit({
        path,
        streaming,
        metadata: incoming.metadata,
        remoteAddress: incoming.remoteAddress,
        forwardedFor: incoming.forwardedFor,
      });
      client = verdict.client;
      if ('refusal' in verdict) {
        caller = verdict.caller;
        refuse(verdict.refusal, verdict.metric);
      } else {
        caller = verdict.caller;
        release = verdict.release;
        chargeAudio = verdict.chargeAudio;
      }
    }

    const clientDeadline = incoming.deadline;
    const deadlinePassed = () => new VoiceError(Reason.DeadlineExceeded, "the client's deadline passed");

    return {
      requestId,
      refusal,
      context() {
        if (ctx !== undefined) return ctx;
        const signalController = new AbortController();
        controller = signalController;
        const finish = new AbortController();
        // A stream ends at the earlier of the client's deadline and the server's stream limit; a
        // unary call honours the client's deadline, and only one without a deadline gets service.timeout.
        const limitMs = streaming ? streamLimitMs : unaryTimeoutMs;
        const serverDeadline = Date.now() - (performance.now() - startedAt) + limitMs;
        const clientFirst =
          clientDeadline !== undefined && (!streaming || clientDeadline.getTime() < serverDeadline);
        const expiresAt = clientFirst ? clientDeadline.getTime() : serverDeadline;
        if (ended)
          signalController.abort(goneReason ?? new VoiceError(Reason.Cancelled, 'the call has ended'));
        else {
          timer = setTimeout(
            () =>
              signalController.abort(
                clientFirst
                  ? deadlinePassed()
                  : streaming
                    ? new VoiceError(
                        Reason.LimitExceeded,
                        `the stream reached service.max_stream_duration_seconds (${limitMs / 1000} s)`,
                        { info: { limit: 'service.max_stream_duration_seconds' } },
                      )
                    : new VoiceError(
                        Reason.DeadlineExceeded,
                        `the call took longer than service.timeout (${limitMs / 1000} s); set a deadline to allow more`,
                        { info: { limit: 'service.timeout' } },
                      ),
              ),
            Math.max(0, expiresAt - Date.now()),
          );
          timer.unref();
          // Health checks never hold a drain: probes must see NOT_SERVING, not wait.
          if (!alwaysServed) untrack = active.add({ finish, cancel: signalController });
        }
        const metadata = new Map(incoming.metadata);
        metadata.delete(API_KEY_HEADER);
        metadata.delete(AUTHORIZATION_HEADER);
        metadata.set(REQUEST_ID_HEADER, requestId);
        ctx = {
          signal: signalController.signal,
          finishSignal: finish.signal,
          deadline: clientDeadline,
          metadata,
          peer,
          requestId,
          logger: callLogger,
          caller,
        };
        audioCharges.set(ctx, chargeAudio);
        return ctx;
      },
      received(bytes) {
        bytesIn += bytes;
        metrics.messagesReceived.inc(labels);
      },
      sent(bytes) {
        bytesOut += bytes;
        metrics.messagesSent.inc(labels);
      },
      clientGone() {
        if (ended) return;
        const reason =
          clientDeadline !== undefined && Date.now() >= clientDeadline.getTime() - DEADLINE_SLACK_MS
            ? deadlinePassed()
            : new VoiceError(Reason.Cancelled, 'the client cancelled the call');
        goneReason = reason;
        controller?.abort(reason);
        end(toStatus(reason));
      },
      status(error) {
        const status = toStatus(error, controller?.signal);
        if (status.unexpected) callLogger.error({ err: error }, 'call failed unexpectedly');
        return status;
      },
      settle,
      end,
    };
  }

  return {
    open,
    get draining() {
      return drained !== undefined;
    },
    get activeCalls() {
      return active.size;
    },
    drain(graceMs, flushMs = config.service.drain_flush_seconds * 1000) {
      drained ??= drainCalls(graceMs, flushMs);
      return drained;
    },
    chargeAudio(ctx, seconds) {
      audioCharges.get(ctx)?.(seconds);
    },
  };
}

function grpcType(kind: MethodKind): string {
  switch (kind) {
    case 'unary':
      return 'unary';
    case 'server_streaming':
      return 'server_stream';
    case 'client_streaming':
      return 'client_stream';
    case 'bidi_streaming':
      return 'bidi_stream';
  }
}
