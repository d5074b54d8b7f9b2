import { randomUUID } from 'node:crypto';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import { type Channel, createChannel } from '../pipeline/channel.js';
import { createSequenceBuffer, type SequenceBuffer } from './transcription-sessions-order.js';

/**
 * The registry of live transcription sessions (StartTranscriptionSession + AppendSessionAudio):
 * each session's id, owner, ordering buffer and audio queue, its gap and idle timers, and what
 * later appends are told once it has ended.
 *
 * Ownership: a session belongs to the caller that opened it, `ctx.caller.id` (an API key's id, or
 * the key behind a client token). A call without credentials (none configured, or optional and
 * none sent) has the owner ANONYMOUS_OWNER: anonymous sessions are usable by every anonymous
 * caller, and only the session id, a random UUID, keeps them apart. A keyed caller cannot use an
 * anonymous session, nor the other way round.
 *
 * Lifetime: open while its stream runs. It ends when its audio is complete and the stream has
 * finished, when the stream is cancelled or fails, after `idleTimeoutMs` without a new chunk, or
 * when a missing chunk has been waited for `gapTimeoutMs`. Ended sessions are remembered for
 * `endedRetentionMs`: appends to them get NOT_FOUND saying how they ended (FAILED_PRECONDITION
 * naming the missing chunk after a gap), then NOT_FOUND like any unknown id. Meanwhile a session
 * that ended with its audio complete still acknowledges retries of its chunks, so that a client
 * whose last answer was lost may retry it.
 */
export interface TranscriptionSessions {
  /** Opens a session for `owner` whose stream's call aborts with `signal`; RESOURCE_EXHAUSTED past maxPerCaller. */
  open(owner: string, signal: AbortSignal): OpenedSession;
  /** Applies or holds one chunk; resolves with the number through which audio is applied. */
  append(owner: string, request: AppendInput, signal: AbortSignal): Promise<number>;
  /** Sessions open now. */
  readonly size: number;
}

/** The fields of an AppendSessionAudioRequest. */
export interface AppendInput {
  readonly sessionId: string;
  readonly sequenceNumber: number;
  readonly audio: Uint8Array;
  readonly endOfAudio: boolean;
}

/** A session as its stream sees it; disposing of it ends the session. */
export interface OpenedSession extends Disposable {
  readonly id: string;
  /** The session's audio in sequence order; ends after the chunk marked end_of_audio, throws when the session fails. */
  readonly audio: AsyncIterable<Uint8Array>;
  /** The stream failed with `error`: the session ends, and later appends are told so. */
  failed(error: unknown): void;
  /**
   * Drain hook: the session applies no more chunks and later appends get `error`; the chunks
   * applied so far are still read, then `audio` ends. False when the session had already ended or
   * its audio was already complete (nothing was cut).
   */
  finish(error: VoiceError): boolean;
}

/** Time for the registry: a monotonic clock and one-shot timers (injected by tests). */
export interface SessionClock {
  now(): number;
  /** Calls `callback` after `ms`; the returned function cancels it. */
  schedule(ms: number, callback: () => void): () => void;
}

export interface TranscriptionSessionOptions {
  /** service.sessions.gap_timeout_ms: how long an early chunk waits for a missing one. */
  readonly gapTimeoutMs: number;
  /** service.sessions.idle_timeout_ms: how long a session may go without a new chunk. */
  readonly idleTimeoutMs: number;
  /** service.sessions.max_per_caller: sessions one owner may have open at once. */
  readonly maxPerCaller: number;
  /** performance.max_audio_chunk_bytes: the largest chunk one append may carry. */
  readonly maxChunkBytes: number;
  /** Chunks held ahead of a missing one, at most (64). */
  readonly maxHeldChunks?: number;
  /** Applied chunks the pipeline has not taken yet beyond which an append waits for room (16). */
  readonly maxQueuedChunks?: number;
  /** How long an ended session's outcome is kept for its appends, in ms (60 s). */
  readonly endedRetentionMs?: number;
  readonly clock?: SessionClock;
}

/** The owner of sessions opened without credentials; a caller's sessions are owned by "caller:<id>". */
export const ANONYMOUS_OWNER = 'anonymous';

/** When a caller at its session limit may try again. */
const SESSION_LIMIT_RETRY_MS = 1000;

interface LiveSession {
  readonly state: 'open';
  readonly owner: string;
  readonly order: SequenceBuffer;
  readonly queue: Channel<Uint8Array>;
  /** Appends waiting for room in the queue; the idle timer does not end a session meanwhile. */
  waiting: number;
  cancelIdle: () => void;
  cancelGap: () => void;
  /** Why it ended, for its appends, once it has. */
  end: (outcome: VoiceError) => void;
}

interface EndedSession {
  readonly state: 'ended';
  readonly owner: string;
  /** What appends are told. */
  readonly error: VoiceError;
  /** For a session whose audio was complete: retries of its chunks are still acknowledged. */
  readonly acceptedThrough: number | undefined;
}

export function createTranscriptionSessions(options: TranscriptionSessionOptions): TranscriptionSessions {
  const clock = options.clock ?? realClock;
  const maxHeldChunks = options.maxHeldChunks ?? 64;
  const maxQueuedChunks = options.maxQueuedChunks ?? 16;
  const endedRetentionMs = options.endedRetentionMs ?? 60_000;
  const sessions = new Map<string, LiveSession | EndedSession>();
  const openPerOwner = new Map<string, number>();
  let openCount = 0;

  const remember = (id: string, owner: string, error: VoiceError, acceptedThrough?: number) => {
    sessions.set(id, { state: 'ended', owner, error, acceptedThrough });
    clock.schedule(endedRetentionMs, () => {
      if (sessions.get(id)?.state === 'ended') sessions.delete(id);
    });
  };

  const armIdle = (id: string, session: LiveSession) => {
    session.cancelIdle();
    if (session.order.complete) return;
    session.cancelIdle = clock.schedule(options.idleTimeoutMs, () => {
      if (session.waiting > 0) return armIdle(id, session);
      const idle = new VoiceError(
        Reason.SessionIdle,
        `session ${id} received no new audio chunk for ${options.idleTimeoutMs} ms (service.sessions.idle_timeout_ms) and has ended`,
        {
          info: {
            limit: 'service.sessions.idle_timeout_ms',
            limit_value: String(options.idleTimeoutMs),
            session_id: id,
          },
        },
      );
      session.queue.fail(idle);
      session.end(
        notFound(`session ${id} has ended: no new audio chunk came for ${options.idleTimeoutMs} ms`),
      );
    });
  };

  const armGap = (id: string, session: LiveSession) => {
    session.cancelGap();
    const gap = session.order.gap;
    if (gap === undefined) return;
    session.cancelGap = clock.schedule(Math.max(0, gap.deadline - clock.now()), () => {
      const current = session.order.gap;
      if (current === undefined) return;
      if (current.deadline > clock.now()) return armGap(id, session);
      const failure = new VoiceError(
        Reason.OutOfOrder,
        `session ${id} failed: chunk ${current.missing} (sequence_number) did not arrive within ${options.gapTimeoutMs} ms of the chunks after it (service.sessions.gap_timeout_ms)`,
        {
          info: {
            limit: 'service.sessions.gap_timeout_ms',
            limit_value: String(options.gapTimeoutMs),
            session_id: id,
            missing_sequence_number: String(current.missing),
          },
        },
      );
      session.queue.fail(failure);
      session.end(failure);
    });
  };

  return {
    get size() {
      return openCount;
    },

    open(owner, signal) {
      const count = openPerOwner.get(owner) ?? 0;
      if (options.maxPerCaller > 0 && count >= options.maxPerCaller) {
        throw new VoiceError(
          Reason.RateLimited,
          `this caller already has ${count} transcription sessions open (service.sessions.max_per_caller); end one or retry later`,
          {
            retryAfterMs: SESSION_LIMIT_RETRY_MS,
            info: { limit: 'service.sessions.max_per_caller', limit_value: String(options.maxPerCaller) },
          },
        );
      }
      const id = randomUUID();
      const queue = createChannel<Uint8Array>();
      const order = createSequenceBuffer({
        gapTimeoutMs: options.gapTimeoutMs,
        maxHeldChunks,
        now: () => clock.now(),
      });
      let ended = false;
      const session: LiveSession = {
        state: 'open',
        owner,
        order,
        queue,
        waiting: 0,
        cancelIdle: () => {},
        cancelGap: () => {},
        end: (outcome) => {
          if (ended) return;
          ended = true;
          session.cancelIdle();
          session.cancelGap();
          signal.removeEventListener('abort', onAbort);
          openCount -= 1;
          const left = (openPerOwner.get(owner) ?? 1) - 1;
          if (left > 0) openPerOwner.set(owner, left);
          else openPerOwner.delete(owner);
          remember(id, owner, outcome, order.complete ? order.acceptedThrough : undefined);
        },
      };
      // The stream was cancelled, ran past its deadline or was drained: the pipeline stops reading.
      const onAbort = () => {
        queue.fail(signal.reason);
        session.end(notFound(`session ${id} has ended: its stream ended (${reasonText(signal.reason)})`));
      };
      sessions.set(id, session);
      openPerOwner.set(owner, count + 1);
      openCount += 1;
      armIdle(id, session);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      return {
        id,
        audio: queue,
        failed(error) {
          queue.close();
          session.end(notFound(`session ${id} has ended: its stream failed (${reasonText(error)})`));
        },
        // Drain hook (see OpenedSession.finish).
        finish(error) {
          if (ended) return false;
          const cut = !order.complete;
          queue.close();
          session.end(error);
          return cut;
        },
        [Symbol.dispose]() {
          queue.close();
          session.end(notFound(`session ${id} has ended: its audio ended and its stream has finished`));
        },
      };
    },

    async append(owner, request, signal) {
      const id = request.sessionId;
      if (id === '') throw invalidArgument('session_id', 'missing; use SessionStarted.session_id');
      const session = sessions.get(id);
      if (session === undefined) {
        throw notFound(`no transcription session ${quoted(id)}; it never existed or ended a while ago`);
      }
      if (session.owner !== owner) {
        throw new VoiceError(
          Reason.PermissionDenied,
          `transcription session ${id} belongs to another caller; only the caller that opened it may send its audio`,
        );
      }
      if (session.state === 'ended') {
        // A retry of a chunk whose answer was lost is safe even once the stream has finished.
        const through = session.acceptedThrough;
        if (through !== undefined && request.sequenceNumber >= 1 && request.sequenceNumber <= through)
          return through;
        throw session.error;
      }
      if (request.audio.length > options.maxChunkBytes) {
        throw new VoiceError(
          Reason.LimitExceeded,
          `audio: a chunk of ${request.audio.length} bytes is larger than performance.max_audio_chunk_bytes (${options.maxChunkBytes})`,
        );
      }
      const arrival = session.order.accept(request.sequenceNumber, {
        audio: request.audio,
        end: request.endOfAudio,
      });
      if (arrival.kind === 'repeated') return session.order.acceptedThrough;
      if (arrival.kind === 'applied') {
        for (const chunk of arrival.chunks) if (chunk.audio.length > 0) session.queue.push(chunk.audio);
        if (session.order.complete) session.queue.close();
      }
      armGap(id, session);
      armIdle(id, session);
      const acceptedThrough = session.order.acceptedThrough;
      if (arrival.kind === 'applied') {
        session.waiting += 1;
        try {
          await session.queue.waitForSpace(maxQueuedChunks, signal);
        } finally {
          session.waiting -= 1;
        }
      }
      return acceptedThrough;
    },
  };
}

function notFound(message: string): VoiceError {
  return new VoiceError(Reason.SessionNotFound, message);
}

/** How a stream ended, in words safe to send: a VoiceError's message; anything else stays in the log. */
function reasonText(reason: unknown): string {
  return reason instanceof VoiceError ? reason.rawMessage : 'internal error';
}

/** A client's session id in a message: quoted, and cut short (ids are 36 characters). */
function quoted(id: string): string {
  return JSON.stringify(id.length > 64 ? `${id.slice(0, 64)}…` : id);
}

const realClock: SessionClock = {
  now: () => performance.now(),
  schedule(ms, callback) {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};
