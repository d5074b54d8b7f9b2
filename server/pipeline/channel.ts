import { invalidArgument, throwIfAborted } from '../errors.js';

/**
 * A single-consumer queue between producers that finish at different times (e.g. recognitions
 * running in parallel) and the one loop that writes responses. `push` never blocks; a producer that
 * can wait honours the consumer's pace with `waitForSpace`. Items pushed before `fail` are still
 * delivered; then the error is thrown. Once the consumer stops early, the channel counts as closed.
 */
export interface Channel<T> extends AsyncIterable<T> {
  push(item: T): void;
  close(): void;
  fail(error: unknown): void;
  /**
   * Resolves once the channel holds fewer than `limit` items, or at once when it is closed or failed
   * (later pushes are then dropped); rejects with the signal's reason when it aborts first.
   */
  waitForSpace(limit: number, signal: AbortSignal): Promise<void>;
  /** Removes and returns the items pushed and not yet taken by the consumer, oldest first. */
  takeQueued(): T[];
  readonly closed: boolean;
}

interface SpaceWaiter {
  readonly limit: number;
  readonly release: () => void;
}

export function createChannel<T>(): Channel<T> {
  const items: T[] = [];
  let done = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const waiters = new Set<SpaceWaiter>();
  const notify = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const releaseWaiters = () => {
    for (const waiter of waiters) if (done || items.length < waiter.limit) waiter.release();
  };
  const finish = () => {
    done = true;
    notify();
    releaseWaiters();
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
      finish();
    },
    fail(error) {
      if (done) return;
      failure = { error };
      finish();
    },
    takeQueued() {
      const taken = items.splice(0);
      releaseWaiters();
      return taken;
    },
    waitForSpace(limit, signal) {
      if (!Number.isInteger(limit) || limit < 1) throw invalidArgument('limit', 'must be an integer >= 1');
      if (done || items.length < limit) return Promise.resolve();
      if (signal.aborted) return Promise.reject(signal.reason);
      return new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          waiters.delete(waiter);
          reject(signal.reason);
        };
        const waiter: SpaceWaiter = {
          limit,
          release: () => {
            waiters.delete(waiter);
            signal.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        waiters.add(waiter);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    },
    async *[Symbol.asyncIterator]() {
      try {
        while (true) {
          if (items.length > 0) {
            const item = items.shift() as T;
            releaseWaiters();
            yield item;
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
      } finally {
        // The consumer is gone (or saw the end): nobody will take more items, so nobody waits for room.
        items.length = 0;
        finish();
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
