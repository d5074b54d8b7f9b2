import type { VoiceError } from '../errors.js';

/**
 * Handlers in progress on every transport, so that a drain waits for them, then cancels those
 * still running when the grace period ends.
 */
export class ActiveCalls {
  readonly #controllers = new Set<AbortController>();
  #waiters: Array<() => void> = [];

  get size(): number {
    return this.#controllers.size;
  }

  /** Counts a call in; the returned function counts it out (once). */
  add(controller: AbortController): () => void {
    this.#controllers.add(controller);
    return () => {
      if (!this.#controllers.delete(controller) || this.#controllers.size > 0) return;
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    };
  }

  abortAll(reason: VoiceError): void {
    for (const controller of this.#controllers) controller.abort(reason);
  }

  /** Resolves true once no call is in progress, or false when `withinMs` passes first. */
  whenEmpty(withinMs: number): Promise<boolean> {
    if (this.#controllers.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((waiter) => waiter !== wake);
        resolve(this.#controllers.size === 0);
      }, withinMs);
      this.#waiters.push(wake);
    });
  }
}
