/**
 * The errors a worker pool (pool.ts) fails a job, a start or a reload with: each names the pool and
 * carries its reason from the catalogue, and a retry hint where a retry may help.
 */
import { Reason, VoiceError } from '../errors.js';
import type { WireError } from './messages.js';

const OVERLOADED_RETRY_MS = 1000;
const CRASHED_RETRY_MS = 500;

/** The queue is full and the job outranks none of those waiting. */
export function queueFull(pool: string, key: string, queueSize: number): VoiceError {
  return new VoiceError(
    Reason.Overloaded,
    `the "${pool}" worker queue is full (${key} = ${queueSize}); retry later`,
    { retryAfterMs: OVERLOADED_RETRY_MS, info: { limit: key } },
  );
}

/** The pool is closed, or closing. */
export function poolShutDown(pool: string): VoiceError {
  return new VoiceError(Reason.Draining, `the "${pool}" model worker pool is shut down`);
}

/** The worker running the job died. */
export function workerDied(pool: string, cause: Error | undefined): VoiceError {
  return new VoiceError(
    Reason.WorkerCrashed,
    `the "${pool}" model worker died while running this job; the job may be retried`,
    { retryAfterMs: CRASHED_RETRY_MS, cause },
  );
}

/** The worker's reply to the job could not be deserialized; the worker is being replaced. */
export function replyUnreadable(pool: string, cause: Error): VoiceError {
  return new VoiceError(
    Reason.WorkerCrashed,
    `the "${pool}" model worker sent a reply to this job that could not be read; the worker is being replaced and the job may be retried`,
    { retryAfterMs: CRASHED_RETRY_MS, cause },
  );
}

/** A worker failed to load its engines at start-up, out of tries. */
export function startFailed(pool: string, worker: number, why: string, cause: Error | undefined): VoiceError {
  return new VoiceError(
    Reason.EngineUnavailable,
    `the "${pool}" model worker ${worker} failed while loading its engines: ${why}`,
    { cause },
  );
}

/** The workers of a reload kept dying while they loaded. */
export function reloadFailed(pool: string, code: number, cause: Error | undefined): VoiceError {
  return new VoiceError(
    Reason.EngineUnavailable,
    `the "${pool}" model workers kept failing while loading after a reload: ${cause?.message ?? `exit code ${code}`}`,
    { cause },
  );
}

/** A buffer the caller asked to transfer cannot be moved (already detached). */
export function transferFailed(kind: string, cause: unknown): VoiceError {
  return new VoiceError(Reason.Internal, 'internal error', {
    cause: new Error(`job ${kind}: a buffer to transfer is already detached`, { cause }),
  });
}

/** An error a worker sent for its job; its `detail` is for the log, not the caller. */
export function fromWire(error: WireError): VoiceError {
  return new VoiceError(error.reason, error.message, {
    ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
    ...(error.info === undefined ? {} : { info: error.info }),
  });
}

/** No worker of the pool is ready and its workers keep dying while they load; it keeps trying. */
export function loadFailing(pool: string, why: string, nextAttemptMs: number | undefined): VoiceError {
  return new VoiceError(
    Reason.EngineUnavailable,
    `the "${pool}" model workers keep failing while loading their engines (${why}); the pool keeps retrying`,
    nextAttemptMs === undefined ? {} : { retryAfterMs: Math.max(1, nextAttemptMs) },
  );
}
