/**
 * The worker pool's jobs (pool.ts): a job goes to an idle worker at once or waits in the bounded
 * priority queue (priority-queue.ts); when the queue is full, a job that outranks the worst queued
 * priority takes the place of the newest job of that priority, which is refused as the full queue
 * refuses. An abort drops a queued job at once; a running job's worker is told to stop it and the
 * caller is answered at once, but the worker takes new work only once it has answered. Every answer
 * is reported to `onJobDone` with the compute time the worker measured.
 */
import type { TransferListItem } from 'node:worker_threads';
import { Reason, VoiceError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { FromWorker, ToWorker, WireError } from './messages.js';
import { fromWire, queueFull, transferFailed } from './pool-errors.js';
import { createPriorityQueue } from './priority-queue.js';
import type { Slot } from './worker-slots.js';

/** A job a worker answered. */
export interface FinishedJob {
  readonly kind: string;
  readonly priority: number;
  /** Time the job took inside the worker, in seconds. */
  readonly seconds: number;
  /** The model the worker named, if any. */
  readonly model: string | undefined;
  /** The `size` the job was run with. */
  readonly size: number | undefined;
  /** `abandoned`: the caller had gone (aborted) before the answer came, so it was dropped. */
  readonly outcome: 'result' | 'error' | 'abandoned';
}

export interface RunOptions {
  /** Lower runs first. */
  readonly priority: number;
  readonly signal: AbortSignal;
  /** Buffers inside the payload to move to the worker; the caller's are detached when `run` returns. */
  readonly transfer?: readonly ArrayBuffer[];
  /** The job's size in the caller's unit (seconds of audio for a recognition), handed to onJobDone. */
  readonly size?: number;
}

export interface Job {
  readonly id: number;
  readonly kind: string;
  readonly payload: unknown;
  readonly transfer: readonly TransferListItem[];
  readonly priority: number;
  readonly size: number | undefined;
  readonly signal: AbortSignal;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  settled: boolean;
  onAbort?: () => void;
}

export type DispatchMetrics = Pick<Metrics, 'inferenceSeconds' | 'queueDepth' | 'busyWorkers'>;

export interface DispatchOptions {
  readonly name: string;
  readonly queueSize: number;
  readonly queueSizeKey?: string | undefined;
  readonly metrics?: DispatchMetrics | undefined;
  readonly logger?: Logger | undefined;
  readonly onJobDone?: ((job: FinishedJob) => void) | undefined;
  /** A worker that is ready and has no job, if any. */
  readonly idleSlot: () => Slot | undefined;
  /** The workers that may be running a job (to tell the one running an aborted job). */
  readonly slots: () => Iterable<Slot>;
}

export interface Dispatch {
  /** Jobs waiting for a worker. */
  readonly queued: number;
  /** Runs the job on an idle worker, or queues it; rejects at once when the queue is full. */
  submit(kind: string, payload: unknown, options: RunOptions): Promise<unknown>;
  /** Gives queued jobs to idle workers. */
  pump(): void;
  /** A worker's answer to its job; the worker is idle again (or retires). */
  answer(slot: Slot, message: Extract<FromWorker, { id: number }>): void;
  /** Rejects a job unless it is settled already. */
  fail(job: Job, error: unknown): void;
  /** Rejects every queued job with `error`. */
  failQueued(error: unknown): void;
}

export function createDispatch(options: DispatchOptions): Dispatch {
  const { name, metrics, logger } = options;
  const queue = createPriorityQueue<Job>(options.queueSize, metrics?.queueDepth);
  let nextJobId = 1;

  function settle(job: Job, action: () => void): void {
    if (job.settled) return;
    job.settled = true;
    if (job.onAbort !== undefined) job.signal.removeEventListener('abort', job.onAbort);
    action();
  }

  function fail(job: Job, error: unknown): void {
    settle(job, () => job.reject(error));
  }

  function overloaded(): VoiceError {
    return queueFull(name, options.queueSizeKey ?? 'performance.request_queue_size', options.queueSize);
  }

  function dispatch(slot: Slot, job: Job): void {
    const message: ToWorker = { type: 'job', id: job.id, kind: job.kind, payload: job.payload };
    try {
      slot.worker.postMessage(message, job.transfer);
    } catch (error) {
      logger?.error({ pool: name, kind: job.kind, err: error }, 'a job could not be sent to its worker');
      fail(job, new VoiceError(Reason.Internal, 'internal error', { cause: error }));
      return;
    }
    slot.state = 'busy';
    slot.job = job;
    metrics?.busyWorkers.inc();
  }

  function pump(): void {
    for (let slot = options.idleSlot(); slot !== undefined && queue.size > 0; slot = options.idleSlot()) {
      const job = queue.dequeue();
      if (job === undefined) return;
      dispatch(slot, job);
    }
  }

  function abort(job: Job): void {
    if (job.settled) return;
    if (!queue.remove(job)) {
      for (const slot of options.slots()) {
        if (slot.job === job) {
          // The worker stays busy until it answers; its answer is then dropped.
          slot.worker.postMessage({ type: 'cancel', id: job.id } satisfies ToWorker);
        }
      }
    }
    fail(job, job.signal.reason);
  }

  function reportDone(job: Job, message: Extract<FromWorker, { id: number }>): void {
    if (options.onJobDone === undefined) return;
    const outcome = job.settled ? 'abandoned' : message.type;
    const model = message.type === 'result' ? message.model : undefined;
    try {
      options.onJobDone({
        kind: job.kind,
        priority: job.priority,
        seconds: message.seconds,
        model,
        size: job.size,
        outcome,
      });
    } catch (error) {
      logger?.error({ pool: name, kind: job.kind, err: error }, 'the onJobDone hook failed');
    }
  }

  function jobFailed(error: WireError, kind: string): VoiceError {
    if (error.detail !== undefined) {
      logger?.error({ pool: name, kind, detail: error.detail }, 'model worker job failed unexpectedly');
    }
    return fromWire(error);
  }

  return {
    get queued() {
      return queue.size;
    },

    submit(kind, payload, { priority, signal, transfer = [], size }) {
      if (signal.aborted) return Promise.reject(signal.reason);
      const slot = queue.size === 0 ? options.idleSlot() : undefined;
      // Chosen now, refused only once the new job is sure to be queued.
      let evicted: Job | undefined;
      if (slot === undefined && queue.full) {
        evicted = queue.outranked(priority);
        if (evicted === undefined) return Promise.reject(overloaded());
      }
      // Move the buffers now, so the caller's arrays are detached whether the job runs now or later.
      let moved: { payload: unknown; transfer: readonly TransferListItem[] } = { payload, transfer };
      if (transfer.length > 0) {
        try {
          moved = structuredClone({ payload, transfer }, { transfer: [...transfer] });
        } catch (error) {
          return Promise.reject(transferFailed(kind, error));
        }
      }
      return new Promise((resolve, reject) => {
        const job: Job = {
          id: nextJobId++,
          kind,
          payload: moved.payload,
          transfer: moved.transfer,
          priority,
          size,
          signal,
          resolve,
          reject,
          settled: false,
        };
        job.onAbort = () => abort(job);
        signal.addEventListener('abort', job.onAbort, { once: true });
        if (evicted !== undefined) {
          const loser = evicted;
          queue.remove(loser);
          fail(loser, overloaded());
          logger?.debug(
            { pool: name, kind, priority, evicted: loser.kind, evictedPriority: loser.priority },
            'queue full: the newest job of the lowest priority was refused to make room',
          );
        }
        if (slot !== undefined) dispatch(slot, job);
        else queue.enqueue(job);
      });
    },

    pump,

    answer(slot, message) {
      const job = slot.job;
      if (job === undefined || job.id !== message.id) return;
      slot.job = undefined;
      slot.answered = true;
      slot.state = slot.retired ? 'retiring' : 'idle';
      metrics?.busyWorkers.dec();
      if (slot.retired) void slot.worker.terminate();
      reportDone(job, message);
      if (message.type === 'result') {
        if (message.model !== undefined) {
          metrics?.inferenceSeconds.observe({ kind: job.kind, model: message.model }, message.seconds);
        }
        settle(job, () => job.resolve(message.result));
      } else {
        fail(job, jobFailed(message.error, job.kind));
      }
      pump();
    },

    fail,

    failQueued(error) {
      for (let job = queue.dequeue(); job !== undefined; job = queue.dequeue()) fail(job, error);
    },
  };
}
