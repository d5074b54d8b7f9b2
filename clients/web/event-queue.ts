/**
 * An unbounded single-consumer queue that is also an async iterable: producers push, end or fail
 * it; the consumer reads with `for await`. Leaving the loop early calls `onReturn` (the owner
 * cancels whatever feeds the queue).
 */
export interface EventQueue<T> extends AsyncIterable<T> {
  push(value: T): void;
  /** No more values: the iteration ends once the queued ones are read. */
  end(): void;
  /** The iteration throws `error` once the queued values are read. */
  fail(error: unknown): void;
  readonly closed: boolean;
}

export function createEventQueue<T>(onReturn: () => void = () => {}): EventQueue<T> {
  const values: T[] = [];
  let state: { kind: 'open' } | { kind: 'ended' } | { kind: 'failed'; error: unknown } = { kind: 'open' };
  let wake: (() => void) | undefined;
  let iterating = false;

  const notify = () => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };

  return {
    get closed() {
      return state.kind !== 'open';
    },
    push(value) {
      if (state.kind !== 'open') return;
      values.push(value);
      notify();
    },
    end() {
      if (state.kind !== 'open') return;
      state = { kind: 'ended' };
      notify();
    },
    fail(error) {
      if (state.kind !== 'open') return;
      state = { kind: 'failed', error };
      notify();
    },
    [Symbol.asyncIterator](): AsyncIterator<T> {
      if (iterating) throw new TypeError('this stream of events can be iterated only once');
      iterating = true;
      return {
        async next(): Promise<IteratorResult<T>> {
          for (;;) {
            if (values.length > 0) return { done: false, value: values.shift() as T };
            if (state.kind === 'ended') return { done: true, value: undefined };
            if (state.kind === 'failed') throw state.error;
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
          }
        },
        async return(): Promise<IteratorResult<T>> {
          if (state.kind === 'open') {
            state = { kind: 'ended' };
            onReturn();
          }
          values.length = 0;
          return { done: true, value: undefined };
        },
      };
    },
  };
}
