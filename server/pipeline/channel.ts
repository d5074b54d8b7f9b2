import { throwIfAborted } from '../errors.js';

/**
 * An unbounded single-consumer queue between producers that finish at different times (e.g.
 * recognitions running in parallel) and the one loop that writes responses. Items pushed before
 * `fail` are still delivered; then the error is thrown.
 */
export interface Channel<T> extends AsyncIterable<T> {
  push(item: T): void;
  close(): void;
  fail(error: unknown): void;
  readonly closed: boolean;
}

export function createChannel<T>(): Channel<T> {
  const items: T[] = [];
  let done = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  return {
    get closed() {
      return done;
    },
    push(item) {
      if (done) return;
      items.push(item);
      notify();
    },
    close() {
      done = true;
      notify();
    },
    fail(error) {
      if (done) return;
      failure = { error };
      done = true;
      notify();
    },
    async *[Symbol.asyncIterator]() {
      while (true) {
        if (items.length > 0) {
          yield items.shift() as T;
          continue;
        }
        if (done) {
          if (failure) throw failure.error;
          return;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },
  };
}

/**
 * The channel as the response stream of a call: it fails at once with the signal's reason when the
 * call is aborted, and stops listening to the signal when the consumer stops.
 */
export function responsesOf<T>(out: Channel<T>, signal: AbortSignal): AsyncIterable<T> {
  const onAbort = () => out.fail(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  return {
    async *[Symbol.asyncIterator]() {
      try {
        throwIfAborted(signal);
        yield* out;
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
    },
  };
}
