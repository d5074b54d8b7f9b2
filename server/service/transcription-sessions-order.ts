import { invalidArgument, Reason, VoiceError } from '../errors.js';

/** One chunk of a session's audio as AppendSessionAudio carries it. */
export interface SessionChunk {
  readonly audio: Uint8Array;
  /** The session's audio ends with this chunk. */
  readonly end: boolean;
}

/** What became of a chunk handed to the sequence buffer. */
export type Arrival =
  /** It was next: it and the held chunks it made contiguous, in order. */
  | { readonly kind: 'applied'; readonly chunks: readonly SessionChunk[] }
  /** It came early: held until the chunks before it arrive. */
  | { readonly kind: 'held' }
  /** Its number was already received (a retry): ignored. */
  | { readonly kind: 'repeated' };

export interface SequenceBufferOptions {
  /** How long the oldest held chunk may wait for the missing one, in ms. */
  readonly gapTimeoutMs: number;
  /** Most chunks held at once; a chunk further ahead of the next expected one is refused. */
  readonly maxHeldChunks: number;
  /** Milliseconds on a monotonic clock. */
  readonly now: () => number;
}

/**
 * Puts a session's numbered chunks back in order. Numbers start at 1; the chunk that is next is
 * applied at once, with the held chunks it makes contiguous; an early chunk is held, a repeated
 * number is ignored. While chunks are held, `gap` names the first missing number and when the
 * session gives up waiting for it (the oldest held chunk's arrival plus the gap timeout). Pure:
 * time comes from the injected clock; whoever owns the buffer arms the timer.
 */
export interface SequenceBuffer {
  /** Takes a chunk; throws INVALID_ARGUMENT, FAILED_PRECONDITION or RESOURCE_EXHAUSTED for one it refuses. */
  accept(sequence: number, chunk: SessionChunk): Arrival;
  /** Every chunk up to this number has been applied; 0 before the first. */
  readonly acceptedThrough: number;
  /** The first missing number while later chunks are held, and when waiting for it ends. */
  readonly gap: { readonly missing: number; readonly deadline: number } | undefined;
  /** True once the chunk marked as the end and all chunks before it have been applied. */
  readonly complete: boolean;
}

interface Held {
  readonly chunk: SessionChunk;
  readonly arrivedAt: number;
}

export function createSequenceBuffer(options: SequenceBufferOptions): SequenceBuffer {
  const { gapTimeoutMs, maxHeldChunks, now } = options;
  const held = new Map<number, Held>();
  let acceptedThrough = 0;
  /** The number of the chunk marked as the end, once it has arrived. */
  let endAt: number | undefined;

  const checkNumber = (sequence: number, chunk: SessionChunk) => {
    if (!Number.isInteger(sequence) || sequence < 1) {
      throw invalidArgument('sequence_number', `${sequence} is not valid; chunks are numbered from 1`);
    }
    if (endAt !== undefined && sequence > endAt) {
      throw new VoiceError(
        Reason.OutOfOrder,
        `sequence_number: ${sequence} is past the end of the session's audio, which chunk ${endAt} marked with end_of_audio`,
        { info: { field: 'sequence_number', end_sequence_number: String(endAt) } },
      );
    }
    if (chunk.end) {
      const later = Math.max(0, ...held.keys());
      if (later > sequence) {
        throw new VoiceError(
          Reason.OutOfOrder,
          `end_of_audio: chunk ${sequence} cannot end the session's audio, chunk ${later} was already received`,
          { info: { field: 'end_of_audio' } },
        );
      }
    }
    const ahead = sequence - acceptedThrough - 1;
    if (ahead > maxHeldChunks) {
      throw new VoiceError(
        Reason.LimitExceeded,
        `sequence_number: ${sequence} is ${ahead} chunks ahead of the next expected one (${acceptedThrough + 1}); a session holds at most ${maxHeldChunks} chunks ahead of a missing one`,
        { info: { field: 'sequence_number', limit_value: String(maxHeldChunks) } },
      );
    }
  };

  return {
    get acceptedThrough() {
      return acceptedThrough;
    },
    get complete() {
      return endAt !== undefined && acceptedThrough >= endAt;
    },
    get gap() {
      if (held.size === 0) return undefined;
      let oldest = Infinity;
      for (const entry of held.values()) oldest = Math.min(oldest, entry.arrivedAt);
      return { missing: acceptedThrough + 1, deadline: oldest + gapTimeoutMs };
    },
    accept(sequence, chunk) {
      // A retry is acknowledged whatever it carries, even after the end: it changes nothing.
      if (sequence >= 1 && (sequence <= acceptedThrough || held.has(sequence))) return { kind: 'repeated' };
      checkNumber(sequence, chunk);
      if (chunk.end) endAt = sequence;
      if (sequence > acceptedThrough + 1) {
        held.set(sequence, { chunk, arrivedAt: now() });
        return { kind: 'held' };
      }
      const chunks = [chunk];
      acceptedThrough = sequence;
      for (let next = held.get(acceptedThrough + 1); next; next = held.get(acceptedThrough + 1)) {
        held.delete(acceptedThrough + 1);
        chunks.push(next.chunk);
        acceptedThrough += 1;
      }
      return { kind: 'applied', chunks };
    },
  };
}
