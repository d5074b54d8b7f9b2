import { Reason, VoiceError } from '../errors.js';

/**
 * Holds an engine that may not be loaded yet (starting, warming up, model missing). Services take
 * engines from their slot on every call, so a call made before the engine is ready gets UNAVAILABLE
 * with the reason, never a fake result.
 */
export interface EngineSlot<T> {
  /** What the engine does, for messages: "speech recognition", "voice activity detection". */
  readonly name: string;
  current(): T | undefined;
  /** The engine, or UNAVAILABLE saying why it is not loaded. */
  require(): T;
  set(engine: T): void;
  markUnavailable(why: string): void;
  onChange(listener: () => void): void;
}

export function createEngineSlot<T>(name: string, initialReason = 'it is still loading'): EngineSlot<T> {
  let engine: T | undefined;
  let why = initialReason;
  const listeners: Array<() => void> = [];
  const notify = () => {
    for (const listener of listeners) listener();
  };
  return {
    name,
    current: () => engine,
    require() {
      if (engine === undefined) {
        throw new VoiceError(Reason.EngineUnavailable, `the ${name} engine is not loaded: ${why}`, {
          retryAfterMs: 5000,
        });
      }
      return engine;
    },
    set(next) {
      engine = next;
      notify();
    },
    markUnavailable(reason) {
      engine = undefined;
      why = reason;
      notify();
    },
    onChange(listener) {
      listeners.push(listener);
    },
  };
}
