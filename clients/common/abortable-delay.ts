import { Code, ConnectError } from '@connectrpc/connect';

/** The error a call the caller cancelled ends with, as connect's own clients report it. */
export function abortError(signal: AbortSignal): ConnectError {
  return new ConnectError('the call was cancelled', Code.Canceled, undefined, undefined, signal.reason);
}

/** Waits `ms`, or rejects with CANCELLED as soon as `signal` aborts (at once when it has). */
export function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortError(signal));
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
