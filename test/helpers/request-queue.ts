/** A request stream a test writes into while the call runs: push requests, then end it. */
export function createRequestQueue<T>() {
  const items: T[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  return {
    push(request: T) {
      items.push(request);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    async *[Symbol.asyncIterator](): AsyncGenerator<T> {
      while (true) {
        const next = items.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (ended) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    },
  };
}
