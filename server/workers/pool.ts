/**
 * A pool of model workers (worker_threads). Each worker loads its engines once, reports ready, then
 * runs one job at a time; jobs wait in a bounded priority queue (pool-dispatch.ts). A worker that
 * dies, or whose reply cannot be deserialized, fails only its own job (WORKER_CRASHED) and is
 * replaced; the queue is served meanwhile by the others (worker-slots.ts).
 *
 * A pool whose workers die while they load keeps trying, with backoff, until it is closed: `start`
 * rejects after a few tries so that the server can report why, and `whenReady` resolves once a
 * worker has loaded after all. While no worker is ready and the last load failed, jobs are refused
 * at once (ENGINE_UNAVAILABLE, with the time of the next attempt as retry hint) instead of waiting.
 *
 * `reload` replaces every worker by one that loads its engines anew (models installed since
 * start-up; generations.ts keeps the books): the old workers serve until the new ones are ready,
 * then finish the job they are running and exit.
 */
import type { ResourceLimits } from 'node:worker_threads';
import type { Logger } from '../observability/logger.js';
import { type BackoffSchedule, DEFAULT_LOAD_RETRY } from './backoff.js';
import type { JobMap } from './messages.js';
import { createDispatch, type DispatchMetrics, type FinishedJob, type RunOptions } from './pool-dispatch.js';
import { loadFailing, poolShutDown, startFailed } from './pool-errors.js';
import { createWorkerSlots, type LoadStatus, type SlotMetrics } from './worker-slots.js';

export type { FinishedJob, RunOptions } from './pool-dispatch.js';
export type { LoadStatus } from './worker-slots.js';

export type PoolMetrics = DispatchMetrics & Partial<SlotMetrics>;

export interface WorkerPoolOptions {
  /** Names the pool in errors, logs, metrics and config messages: "vad", "inference". */
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
  /** Delay before replacing a worker that died at work (100 ms). */
  readonly restartDelayMs?: number;
  /** Backoff before replacing a worker that died while loading (1 s doubling to 60 s). */
  readonly loadRetry?: BackoffSchedule;
  /** Told of every answer a worker sends, with the compute time it measured (capacity estimates). */
  readonly onJobDone?: (job: FinishedJob) => void;
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
  /**
   * Starts every worker; resolves with the first one's report when all are ready. Rejects once
   * workers have died while loading a few times in a row; the pool then keeps trying (`whenReady`).
   */
  start(): Promise<Report>;
  /**
   * Resolves with the latest report once a worker is ready (at once when one is), however many
   * attempts that takes; rejects when the pool closes first.
   */
  whenReady(): Promise<Report>;
  run<K extends keyof Jobs & string>(
    kind: K,
    payload: Jobs[K]['payload'],
    options: RunOptions,
  ): Promise<Jobs[K]['result']>;
  stats(): PoolStats;
  /** How loading goes: ready workers, failed loads in a row and why, the next attempt. */
  status(): LoadStatus;
  /** Calls `listener` on every change of `status()`; returns the function that stops it. */
  onStatus(listener: (status: LoadStatus) => void): () => void;
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

/** Workers that die while loading in a row before `start` (or a reload) gives up. */
const START_ATTEMPTS = 3;

export function createWorkerPool<Jobs extends JobMap, Report>(
  options: WorkerPoolOptions,
): WorkerPool<Jobs, Report> {
  const { name, size, logger } = options;
  let started = false;
  let closed = false;
  let closing: Promise<void> | undefined;
  let firstReport: Report | undefined;
  let latestReport: Report | undefined;
  let startup: { resolve: (report: Report) => void; reject: (error: unknown) => void } | undefined;
  const waiters = new Set<{ resolve: (report: Report) => void; reject: (error: unknown) => void }>();
  const listeners = new Set<(status: LoadStatus) => void>();

  const dispatch = createDispatch({
    name,
    queueSize: options.queueSize,
    queueSizeKey: options.queueSizeKey,
    metrics: options.metrics,
    logger,
    onJobDone: options.onJobDone,
    idleSlot: () => slots.idle(),
    slots: () => slots.all(),
  });

  const slots = createWorkerSlots<Report>({
    name,
    size,
    script: options.script ?? new URL('./engine-worker.js', import.meta.url),
    workerData: options.workerData,
    resourceLimits: options.resourceLimits,
    logger,
    metrics: options.metrics,
    restartDelayMs: options.restartDelayMs ?? 100,
    loadRetry: options.loadRetry ?? DEFAULT_LOAD_RETRY,
    reloadAttempts: START_ATTEMPTS,
    onReady(slot, report) {
      firstReport ??= report;
      if (slot.generation === slots.generations.current) latestReport = report;
      if (startup !== undefined && [...slots.all()].every((s) => s.state !== 'starting')) {
        startup.resolve(firstReport);
        startup = undefined;
      }
      if (latestReport !== undefined) {
        for (const waiter of waiters) waiter.resolve(latestReport);
        waiters.clear();
      }
      notify();
      dispatch.pump();
    },
    onAnswer: (slot, message) => dispatch.answer(slot, message),
    onLost: (job, error) => dispatch.fail(job, error),
    onLoadFailed(status, worker, error) {
      if (startup !== undefined && status.loadFailures >= START_ATTEMPTS) {
        const failed = startup;
        startup = undefined;
        failed.reject(startFailed(name, worker, status.reason ?? 'it died', error));
      }
      if (isDown(status)) dispatch.failQueued(downError(status));
      notify();
    },
  });

  /** No worker is ready and the last load failed: jobs would wait for the next attempt. */
  function isDown(status: LoadStatus): boolean {
    return status.ready === 0 && status.loadFailures > 0;
  }

  function downError(status: LoadStatus) {
    const wait =
      status.nextAttemptAt === undefined ? undefined : Math.max(0, status.nextAttemptAt - Date.now());
    return loadFailing(name, status.reason ?? 'it died', wait);
  }

  function notify(): void {
    const status = slots.status();
    for (const listener of listeners) {
      try {
        listener(status);
      } catch (error) {
        logger?.error({ pool: name, err: error }, 'a worker pool status listener failed');
      }
    }
  }

  /** Idempotent: every call resolves once the workers have exited. */
  function close(): Promise<void> {
    closing ??= shutDown();
    return closing;
  }

  async function shutDown(): Promise<void> {
    closed = true;
    dispatch.failQueued(poolShutDown(name));
    const exited = slots.close((job) => dispatch.fail(job, poolShutDown(name)));
    slots.generations.cancel(poolShutDown(name));
    startup?.reject(poolShutDown(name));
    startup = undefined;
    for (const waiter of waiters) waiter.reject(poolShutDown(name));
    waiters.clear();
    listeners.clear();
    await exited;
  }

  return {
    name,

    start() {
      if (started) return Promise.reject(new Error(`the "${name}" worker pool was already started`));
      started = true;
      const ready = new Promise<Report>((resolve, reject) => {
        startup = { resolve, reject };
      });
      for (let i = 0; i < size; i++) slots.spawn();
      return ready;
    },

    whenReady() {
      if (closed) return Promise.reject(poolShutDown(name));
      if (latestReport !== undefined && slots.status().ready > 0) return Promise.resolve(latestReport);
      return new Promise<Report>((resolve, reject) => {
        waiters.add({ resolve, reject });
      });
    },

    run(kind, payload, runOptions) {
      if (closed) return Promise.reject(poolShutDown(name));
      const status = slots.status();
      if (isDown(status)) return Promise.reject(downError(status));
      return dispatch.submit(kind, payload, runOptions) as Promise<Jobs[typeof kind]['result']>;
    },

    reload(data) {
      if (closed) return Promise.reject(poolShutDown(name));
      if (!started || startup !== undefined) {
        return Promise.reject(new Error(`the "${name}" worker pool must finish starting before a reload`));
      }
      if (slots.generations.reloading) {
        return Promise.reject(new Error(`the "${name}" worker pool is already reloading`));
      }
      return new Promise<Report>((resolve, reject) => {
        slots.generations.begin(data, {
          resolve(report) {
            latestReport = report;
            resolve(report);
          },
          reject,
        });
        for (let i = 0; i < size; i++) slots.spawn();
      });
    },

    stats() {
      return { ...slots.stats(), queued: dispatch.queued };
    },

    status: () => slots.status(),

    onStatus(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    close,
  };
}
