import type { VoiceError } from '../errors.js';

/** The two signals of a call in progress: "stop taking input and finish", then "stop now". */
export interface TrackedCall {
  /** Aborted when a drain's grace period runs out (the handler's `finishSignal`). */
  readonly finish: AbortController;
  /** Aborted when the drain's flush budget runs out too (the handler's `signal`). */
  readonly cancel: AbortController;
}

/**
 * Handlers in progress on every transport, so that a drain waits for them, tells those still
 * running when the grace period ends to finish, then cancels those still running after the flush.
 */
export class ActiveCalls {
  readonly #calls = new Set<TrackedCall>();
  #waiters: Array<() => void> = [];

  get size(): number {
    return this.#calls.size;
  }

  /** Counts a call in; the returned function counts it out (once). */
  add(call: TrackedCall): () => void {
    this.#calls.add(call);
    return () => {
      if (!this.#calls.delete(call) || this.#calls.size > 0) return;
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    };
  }

  finishAll(reason: VoiceError): void {
    for (const call of this.#calls) call.finish.abort(reason);
  }

  abortAll(reason: VoiceError): void {
    for (const call of this.#calls) call.cancel.abort(reason);
  }

  /** Resolves true once no call is in progress, or false when `withinMs` passes first. */
  whenEmpty(withinMs: number): Promise<boolean> {
    if (this.#calls.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((waiter) => waiter !== wake);
        resolve(this.#calls.size === 0);
      }, withinMs);
      this.#waiters.push(wake);
    });
  }
}
