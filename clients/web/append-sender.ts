import { Code, ConnectError } from '@connectrpc/connect';
import { abortableDelay, abortError } from '../common/abortable-delay.js';

/** One append of a live session: what the unary RPC carries besides the session id. */
export interface AppendChunk {
  readonly sequenceNumber: number;
  readonly audio: Uint8Array;
  readonly endOfAudio: boolean;
}

export interface RetryOptions {
  /** Tries of one append before the session fails (default 6). */
  readonly attempts?: number;
  /** First pause between tries, doubled after each (default 100 ms, at most 2 s). */
  readonly initialDelayMs?: number;
  /** Deadline of each try (default 10 s). */
  readonly timeoutMs?: number;
}

export interface AppendSenderOptions {
  readonly append: (chunk: AppendChunk, call: { signal: AbortSignal; timeoutMs: number }) => Promise<void>;
  readonly signal: AbortSignal;
  /** The number of the first append. */
  readonly firstSequenceNumber: number;
  /**
   * Largest append, read before each one: audio queued while one is in flight goes out together,
   * up to this size.
   */
  readonly maxAppendBytes?: () => number;
  readonly retry?: RetryOptions;
}

export interface AppendSender {
  /** Queues audio; it goes out in order, one append in flight at a time. */
  push(audio: Uint8Array): void;
  /**
   * Sends what is queued with the end-of-audio flag; resolves once the server has acknowledged
   * it, rejects if an append failed for good.
   */
  end(): Promise<void>;
  /** Settles when the sender stops: after end(), on abort, or with the error that stopped it. */
  readonly done: Promise<void>;
}

const DEFAULT_MAX_APPEND_BYTES = 256 * 1024;

const RETRYABLE = new Set([
  Code.Unavailable,
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
]);

/**
 * Sends a live session's audio through the append RPC: in order, one append in flight (audio that
 * queues meanwhile is merged into the next one, so a slow network does not fall behind), and a
 * failed append is retried with the same sequence number and the same bytes — the server
 * acknowledges a repeated number without applying it again, so a retry is safe even when the
 * first try did arrive.
 */
export function createAppendSender(options: AppendSenderOptions): AppendSender {
  const maxBytes = options.maxAppendBytes ?? (() => DEFAULT_MAX_APPEND_BYTES);
  const attempts = options.retry?.attempts ?? 6;
  const initialDelayMs = options.retry?.initialDelayMs ?? 100;
  const timeoutMs = options.retry?.timeoutMs ?? 10_000;
  const queue: Uint8Array[] = [];
  let ending = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  options.signal.addEventListener('abort', notify, { once: true });

  const sendWithRetry = async (chunk: AppendChunk) => {
    let delay = initialDelayMs;
    for (let attempt = 1; ; attempt += 1) {
      try {
        await options.append(chunk, { signal: options.signal, timeoutMs });
        return;
      } catch (reason) {
        const error = ConnectError.from(reason);
        if (options.signal.aborted || attempt >= attempts || !RETRYABLE.has(error.code)) throw error;
        const pushback = Number(error.metadata.get('grpc-retry-pushback-ms'));
        await abortableDelay(Number.isFinite(pushback) && pushback > 0 ? pushback : delay, options.signal);
        delay = Math.min(delay * 2, 2000);
      }
    }
  };

  const run = async () => {
    let sequenceNumber = options.firstSequenceNumber;
    for (;;) {
      while (queue.length === 0 && !ending) {
        if (options.signal.aborted) throw abortError(options.signal);
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
      if (options.signal.aborted) throw abortError(options.signal);
      const audio = take(queue, maxBytes());
      const endOfAudio = ending && queue.length === 0;
      await sendWithRetry({ sequenceNumber, audio, endOfAudio });
      sequenceNumber += 1;
      if (endOfAudio) return;
    }
  };

  const done = run();
  done.catch(() => {});
  return {
    done,
    push(audio) {
      if (ending || audio.length === 0) return;
      queue.push(audio);
      notify();
    },
    end() {
      ending = true;
      notify();
      return done;
    },
  };
}

/** The queued chunks, merged, up to `maxBytes` (at least one chunk). */
function take(queue: Uint8Array[], maxBytes: number): Uint8Array {
  let count = 0;
  let size = 0;
  while (count < queue.length && (count === 0 || size + (queue[count]?.length ?? 0) <= maxBytes)) {
    size += queue[count]?.length ?? 0;
    count += 1;
  }
  const parts = queue.splice(0, count);
  if (parts.length === 1) return parts[0] ?? new Uint8Array(0);
  const merged = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    merged.set(part, offset);
    offset += part.length;
  }
  return merged;
}
