/**
 * A pool of model workers (worker_threads). Each worker loads its engines once, reports ready, then
 * runs one job at a time. Jobs wait in a bounded priority queue (priority-queue.ts: lower number
 * first, FIFO within a priority). When the queue is full, a job that outranks the worst queued
 * priority takes the place of the newest job of that priority, which is refused as the full queue
 * refuses: a flood of interims never refuses a final. An abort drops a queued job at once; a
 * running job's worker is told to stop it and the caller is answered at once, but the worker takes
 * new work only when it has finished. A worker that dies, or whose reply cannot be deserialized,
 * fails only its own job (WORKER_CRASHED) and is replaced; the queue is served meanwhile by the
 * others. `reload` replaces every worker by one that loads its engines anew (models installed since
 * start-up; generations.ts keeps the books): the old workers serve until the new ones are ready,
 * then finish the job they are running and exit. `onJobDone` hears of every answer with the compute
 * time the worker measured (the capacity estimate learns from it).
 */
import { type ResourceLimits, type TransferListItem, Worker } from 'node:worker_threads';
import { Reason, VoiceError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { createGenerations } from './generations.js';
import type { FromWorker, JobMap, ToWorker, WireError } from './messages.js';
import {
  fromWire,
  poolShutDown,
  queueFull,
  reloadFailed,
  replyUnreadable,
  startFailed,
  transferFailed,
  workerDied,
} from './pool-errors.js';
import { createPriorityQueue } from './priority-queue.js';

export type PoolMetrics = Pick<Metrics, 'inferenceSeconds' | 'queueDepth' | 'busyWorkers'>;

export interface WorkerPoolOptions {
  /** Names the pool in errors, logs and config messages: "vad", "inference". */
  readonly name: string;
  readonly size: number;
  /** The worker's script; the engine worker by default. */
  readonly script?: URL;
  readonly workerData: unknown;
  /**
   * Jobs that may wait for a worker (performance.request_queue_size). Beyond it `run` rejects, unless
   * the new job outranks a queued one, which is then refused instead.
   */
  readonly queueSize: number;
  /** The config key named when the queue is full. */
  readonly queueSizeKey?: string;
  readonly metrics?: PoolMetrics;
  readonly logger?: Logger;
  readonly resourceLimits?: ResourceLimits;
  /** First delay before replacing a dead worker; doubles per failure in a row, up to 5 s. */
  readonly restartDelayMs?: number;
  /** Told of every answer a worker sends, with the compute time it measured (capacity estimates). */
  readonly onJobDone?: (job: FinishedJob) => void;
}

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

export interface PoolStats {
  readonly workers: number;
  readonly ready: number;
  readonly busy: number;
  readonly queued: number;
  /** Workers started to replace dead ones. */
  readonly restarts: number;
}

export interface WorkerPool<Jobs extends JobMap, Report> {
  readonly name: string;
  /** Starts every worker; resolves with the first one's report when all are ready. */
  start(): Promise<Report>;
  run<K extends keyof Jobs & string>(
    kind: K,
    payload: Jobs[K]['payload'],
    options: RunOptions,
  ): Promise<Jobs[K]['result']>;
  stats(): PoolStats;
  /**
   * Starts a new worker for every slot with `workerData` (default: the same), keeps the old ones
   * serving until all new ones are ready, then retires them after their running job; resolves with
   * the first new worker's report. Rejects, keeping the old workers, when new workers keep dying
   * while they load. One reload at a time.
   */
  reload(workerData?: unknown): Promise<Report>;
  /** Rejects every pending job with UNAVAILABLE and terminates the workers; resolves once they exited. */
  close(): Promise<void>;
}

interface Job {
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

interface Slot {
  readonly worker: Worker;
  readonly number: number;
  /** `retiring`: being terminated while idle; it takes no job. */
  state: 'starting' | 'idle' | 'busy' | 'retiring' | 'exited';
  job: Job | undefined;
  /** The error event that came before the exit, if any. */
  error: Error | undefined;
  /** Which start or reload spawned it. */
  readonly generation: number;
  /** Replaced by a reload: exits after its running job and is not replaced. */
  retired: boolean;
}

const MAX_RESTART_DELAY_MS = 5000;
/** Tries a worker gets to load its engines at start-up before the pool gives up. */
const START_ATTEMPTS = 3;

export function createWorkerPool<Jobs extends JobMap, Report>(
  options: WorkerPoolOptions,
): WorkerPool<Jobs, Report> {
  const { name, size, metrics, logger } = options;
  const script = options.script ?? new URL('./engine-worker.js', import.meta.url);
  const restartDelayMs = options.restartDelayMs ?? 100;
  const slots = new Set<Slot>();
  const queue = createPriorityQueue<Job>(options.queueSize, metrics?.queueDepth);
  let nextJobId = 1;
  let nextWorkerNumber = 1;
  let restarts = 0;
  let failuresInRow = 0;
  let started = false;
  let closed = false;
  let firstReport: Report | undefined;
  let startup: { resolve: (report: Report) => void; reject: (error: unknown) => void } | undefined;
  const restartTimers = new Set<NodeJS.Timeout>();
  let closing: Promise<void> | undefined;
  const generations = createGenerations<Report>({
    name,
    size,
    attempts: START_ATTEMPTS,
    workerData: options.workerData,
    logger,
    readyWorkers(generation) {
      let ready = 0;
      for (const slot of slots) {
        if (slot.generation === generation && (slot.state === 'idle' || slot.state === 'busy')) ready += 1;
      }
      return ready;
    },
    retire(which) {
      for (const slot of slots) if (which(slot.generation)) retire(slot);
    },
  });

  function spawn(): void {
    const worker = new Worker(script, {
      workerData: generations.workerData,
      ...(options.resourceLimits === undefined ? {} : { resourceLimits: options.resourceLimits }),
    });
    const slot: Slot = {
      worker,
      number: nextWorkerNumber++,
      state: 'starting',
      job: undefined,
      error: undefined,
      generation: generations.current,
      retired: false,
    };
    slots.add(slot);
    worker.on('message', (message: FromWorker<Report>) => onMessage(slot, message));
    worker.on('messageerror', (error: Error) => onMessageError(slot, error));
    worker.on('error', (error: Error) => {
      slot.error = error;
    });
    worker.on('exit', (code) => onExit(slot, code));
  }

  function onMessage(slot: Slot, message: FromWorker<Report>): void {
    if (message.type === 'ready') {
      if (slot.state !== 'starting') return;
      slot.state = 'idle';
      failuresInRow = 0;
      logger?.info(
        { pool: name, worker: slot.number, loadSeconds: message.loadSeconds },
        'model worker ready',
      );
      firstReport ??= message.report;
      if (startup !== undefined && [...slots].every((s) => s.state !== 'starting')) {
        startup.resolve(firstReport);
        startup = undefined;
      }
      generations.ready(slot.generation, message.report);
      pump();
      return;
    }
    const job = slot.job;
    if (job === undefined || job.id !== message.id) return;
    slot.job = undefined;
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
      settle(job, () => job.reject(jobFailed(message.error, job.kind)));
    }
    pump();
  }

  function reportDone(job: Job, message: Extract<FromWorker<Report>, { id: number }>): void {
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

  /**
   * A reply that cannot be deserialized is lost, so the worker would stay busy for good: its job fails
   * as if the worker had crashed, and the worker is terminated and replaced (onExit does the rest).
   */
  function onMessageError(slot: Slot, error: Error): void {
    if (closed || slot.state === 'exited') return;
    logger?.error(
      { pool: name, worker: slot.number, err: error, job: slot.job?.kind },
      'a model worker reply could not be deserialized; replacing the worker',
    );
    const job = slot.job;
    if (job !== undefined) {
      settle(job, () => job.reject(replyUnreadable(name, error)));
    }
    slot.error ??= new Error(`a reply could not be deserialized: ${error.message}`, { cause: error });
    // A busy (or starting) slot stays so until the exit, so it is given no new job meanwhile.
    if (slot.state === 'idle') slot.state = 'retiring';
    void slot.worker.terminate();
  }

  function jobFailed(error: WireError, kind: string): VoiceError {
    if (error.detail !== undefined) {
      logger?.error({ pool: name, kind, detail: error.detail }, 'model worker job failed unexpectedly');
    }
    return fromWire(error);
  }

  function onExit(slot: Slot, code: number): void {
    const previous = slot.state;
    slot.state = 'exited';
    slots.delete(slot);
    if (closed) return;
    if (slot.retired && slot.job === undefined) {
      logger?.info({ pool: name, worker: slot.number }, 'model worker retired after a reload');
      return;
    }
    const cause =
      slot.error === undefined ? `exit code ${code}` : `${slot.error.message} (exit code ${code})`;
    logger?.error(
      { pool: name, worker: slot.number, code, err: slot.error, job: slot.job?.kind },
      'model worker died',
    );
    const job = slot.job;
    if (previous === 'busy') metrics?.busyWorkers.dec();
    if (job !== undefined) {
      slot.job = undefined;
      settle(job, () => job.reject(workerDied(name, slot.error)));
    }
    if (previous === 'starting' && generations.loadFailed(slot.generation)) {
      generations.abandon(reloadFailed(name, code, slot.error));
      return;
    }
    // A worker that dies while loading at start-up gets a few more tries (a transient file-system or
    // memory problem); a model that is simply missing never gets here, it is reported as unavailable.
    if (previous === 'starting' && startup !== undefined && failuresInRow + 1 < START_ATTEMPTS) {
      logger?.warn(
        { pool: name, worker: slot.number, attempt: failuresInRow + 1 },
        'retrying model worker start',
      );
    } else if (previous === 'starting' && startup !== undefined) {
      const failed = startup;
      startup = undefined;
      failed.reject(startFailed(name, slot.number, cause, slot.error));
      void close();
      return;
    }
    // A worker of the generation a reload is replacing, or one the reload retired, is not restarted.
    if (slot.retired || generations.replacing(slot.generation)) return;
    if (previous === 'starting') failuresInRow += 1;
    const delay = Math.min(MAX_RESTART_DELAY_MS, restartDelayMs * 2 ** failuresInRow);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      if (closed) return;
      restarts += 1;
      spawn();
    }, delay);
    restartTimers.add(timer);
  }

  function retire(slot: Slot): void {
    slot.retired = true;
    if (slot.state === 'busy') return; // terminated when its job answers
    slot.state = 'retiring';
    void slot.worker.terminate();
  }

  function settle(job: Job, action: () => void): void {
    if (job.settled) return;
    job.settled = true;
    if (job.onAbort !== undefined) job.signal.removeEventListener('abort', job.onAbort);
    action();
  }

  function overloaded(): VoiceError {
    return queueFull(name, options.queueSizeKey ?? 'performance.request_queue_size', options.queueSize);
  }

  function idleSlot(): Slot | undefined {
    for (const slot of slots) if (slot.state === 'idle') return slot;
    return undefined;
  }

  function pump(): void {
    for (let slot = idleSlot(); slot !== undefined && queue.size > 0; slot = idleSlot()) {
      const job = queue.dequeue();
      if (job === undefined) return;
      dispatch(slot, job);
    }
  }

  function dispatch(slot: Slot, job: Job): void {
    const message: ToWorker = { type: 'job', id: job.id, kind: job.kind, payload: job.payload };
    try {
      slot.worker.postMessage(message, job.transfer);
    } catch (error) {
      logger?.error({ pool: name, kind: job.kind, err: error }, 'a job could not be sent to its worker');
      settle(job, () => job.reject(new VoiceError(Reason.Internal, 'internal error', { cause: error })));
      return;
    }
    slot.state = 'busy';
    slot.job = job;
    metrics?.busyWorkers.inc();
  }

  function abort(job: Job): void {
    if (job.settled) return;
    if (!queue.remove(job)) {
      for (const slot of slots) {
        if (slot.job === job) {
          // The worker stays busy until it answers; its answer is then dropped.
          slot.worker.postMessage({ type: 'cancel', id: job.id } satisfies ToWorker);
        }
      }
    }
    settle(job, () => job.reject(job.signal.reason));
  }

  function unavailable(): VoiceError {
    return poolShutDown(name);
  }

  /** Idempotent: every call resolves once the workers have exited. */
  function close(): Promise<void> {
    closing ??= shutDown();
    return closing;
  }

  async function shutDown(): Promise<void> {
    closed = true;
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();
    for (let job = queue.dequeue(); job !== undefined; job = queue.dequeue()) {
      const pending = job;
      settle(pending, () => pending.reject(unavailable()));
    }
    const exits: Promise<number>[] = [];
    for (const slot of slots) {
      if (slot.state === 'busy') metrics?.busyWorkers.dec();
      const job = slot.job;
      if (job !== undefined) settle(job, () => job.reject(unavailable()));
      slot.job = undefined;
      exits.push(slot.worker.terminate());
    }
    slots.clear();
    if (startup !== undefined) {
      startup.reject(unavailable());
      startup = undefined;
    }
    await Promise.allSettled(exits);
  }

  return {
    name,

    start() {
      if (started) return Promise.reject(new Error(`the "${name}" worker pool was already started`));
      started = true;
      const ready = new Promise<Report>((resolve, reject) => {
        startup = { resolve, reject };
      });
      for (let i = 0; i < size; i++) spawn();
      return ready;
    },

    run(kind, payload, { priority, signal, transfer = [], size }) {
      if (closed) return Promise.reject(unavailable());
      if (signal.aborted) return Promise.reject(signal.reason);
      const slot = queue.size === 0 ? idleSlot() : undefined;
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
          settle(loser, () => loser.reject(overloaded()));
          logger?.debug(
            { pool: name, kind, priority, evicted: loser.kind, evictedPriority: loser.priority },
            'queue full: the newest job of the lowest priority was refused to make room',
          );
        }
        if (slot !== undefined) dispatch(slot, job);
        else queue.enqueue(job);
      });
    },

    reload(data) {
      if (closed) return Promise.reject(unavailable());
      if (!started || startup !== undefined) {
        return Promise.reject(new Error(`the "${name}" worker pool must finish starting before a reload`));
      }
      if (generations.reloading) {
        return Promise.reject(new Error(`the "${name}" worker pool is already reloading`));
      }
      return new Promise<Report>((resolve, reject) => {
        generations.begin(data, { resolve, reject });
        for (let i = 0; i < size; i++) spawn();
      });
    },

    stats() {
      let ready = 0;
      let busy = 0;
      for (const slot of slots) {
        if (slot.state === 'idle' || slot.state === 'busy') ready += 1;
        if (slot.state === 'busy') busy += 1;
      }
      return { workers: slots.size, ready, busy, queued: queue.size, restarts };
    },

    close,
  };
}
