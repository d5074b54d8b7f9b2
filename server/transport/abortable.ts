/**
 * The iterable's items until it ends, or until the signal aborts: then the next read rejects with
 * the signal's reason at once, even while the source is still waiting for its next item. Both
 * transports read request streams through it, so a handler waiting for audio or text notices a
 * cancel, a deadline or a drain.
 */
export async function* abortable<T>(source: AsyncIterator<T>, signal: AbortSignal): AsyncGenerator<T> {
  while (true) {
    const next = await untilAborted(source.next(), signal);
    if (next.done) return;
    yield next.value;
  }
}

/**
 * The promise's outcome, or the signal's reason if it aborts first. The listener lives only as long
 * as one wait, so nothing of a settled message stays reachable from the signal.
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    // Nobody waits for the promise any more; its failure must not surface as an unhandled rejection.
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}
