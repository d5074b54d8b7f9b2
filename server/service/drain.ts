import { Reason, VoiceError } from '../errors.js';

/**
 * What a streaming handler does when a drain's grace period runs out (`ctx.finishSignal`): it stops
 * taking input, finishes and delivers what it already took, and only then ends with UNAVAILABLE
 * (DRAINING), saying how far it got so that the client can resend the rest to another instance.
 */

/** An input that ends early, without error, once the finish signal aborts. */
export interface FinishableInput<T> extends AsyncIterable<T> {
  /** True once the input was ended by the signal rather than by its source. */
  readonly cut: boolean;
}

/**
 * The source's items until it ends, or until `finish` aborts: then the input ends at once, even
 * while the source is waiting for its next item, and that item is never read. Whatever was read
 * before goes on through the pipeline, which finishes as on a client's half-close.
 */
export function endOnFinish<T>(
  source: AsyncIterable<T>,
  finish: AbortSignal | undefined,
): FinishableInput<T> {
  let cut = false;
  const iterator = source[Symbol.asyncIterator]();
  async function* items(): AsyncGenerator<T> {
    let ended = false;
    try {
      while (true) {
        if (finish?.aborted) {
          cut = true;
          return;
        }
        const next =
          finish === undefined ? await iterator.next() : await untilFinished(iterator.next(), finish);
        if (next === FINISHED) {
          cut = true;
          return;
        }
        if (next.done) {
          ended = true;
          return;
        }
        yield next.value;
      }
    } finally {
      // The consumer stopped early (no read is pending then): the source stops too.
      if (!ended && !cut) await iterator.return?.();
    }
  }
  return {
    get cut() {
      return cut;
    },
    [Symbol.asyncIterator]: items,
  };
}

const FINISHED = Symbol('finished');

function untilFinished<T>(promise: Promise<T>, finish: AbortSignal): Promise<T | typeof FINISHED> {
  let onFinish = () => {};
  const finished = new Promise<typeof FINISHED>((resolve) => {
    onFinish = () => resolve(FINISHED);
    finish.addEventListener('abort', onFinish, { once: true });
  });
  // The read left waiting fails when the call is cancelled; nobody waits for it any more.
  promise.catch(() => {});
  return Promise.race([promise, finished]).finally(() => finish.removeEventListener('abort', onFinish));
}

/**
 * The first request of a stream (its config), or undefined when `finish` aborts first: a call told
 * to finish before it has said what it wants has nothing to finish.
 */
export async function firstRequest<T>(
  iterator: AsyncIterator<T>,
  finish: AbortSignal | undefined,
): Promise<IteratorResult<T> | undefined> {
  if (finish === undefined) return iterator.next();
  if (finish.aborted) return undefined;
  const first = await untilFinished(iterator.next(), finish);
  return first === FINISHED ? undefined : first;
}

/** Calls `callback` once when `finish` aborts (at once if it has); disposing of it stops listening. */
export function whenFinished(finish: AbortSignal | undefined, callback: () => void): Disposable {
  if (finish === undefined) return { [Symbol.dispose]() {} };
  if (finish.aborted) {
    callback();
    return { [Symbol.dispose]() {} };
  }
  finish.addEventListener('abort', callback, { once: true });
  return { [Symbol.dispose]: () => finish.removeEventListener('abort', callback) };
}

/** How a transcription cut by a drain ends, after its last final: how much of its audio was transcribed. */
export function drainedTranscription(processedMs: number, resumeFromMs?: number): VoiceError {
  const ms = Math.max(0, Math.floor(processedMs));
  if (resumeFromMs !== undefined) {
    return new VoiceError(
      Reason.Draining,
      `the server is shutting down; audio through ${(ms / 1000).toFixed(3)} s was transcribed, resume the stream from its last AudioCommitted point (${resumeFromMs} ms) on another instance`,
      { info: { processed_audio_ms: String(ms), committed_offset_ms: String(resumeFromMs) } },
    );
  }
  return new VoiceError(
    Reason.Draining,
    `the server is shutting down; audio through ${(ms / 1000).toFixed(3)} s was transcribed, resend the rest to another instance`,
    { info: { processed_audio_ms: String(ms) } },
  );
}

/**
 * How a synthesis cut by a drain ends, after the sentence it was speaking: the text spoken, as the
 * end of the last text span sent (code points of the stream's text).
 */
export function drainedSynthesis(spokenChars: number): VoiceError {
  return new VoiceError(
    Reason.Draining,
    `the server is shutting down; the text through character ${spokenChars} was spoken, resend the rest to another instance`,
    { info: { spoken_text_chars: String(spokenChars) } },
  );
}

/** What appends to a transcription session told to finish by a drain are answered (as for an ended session). */
export function sessionDrained(sessionId: string): VoiceError {
  return new VoiceError(
    Reason.SessionNotFound,
    `session ${sessionId} has ended: the server is shutting down and took no more audio; its stream says how much was transcribed, resend the rest to another instance`,
  );
}
