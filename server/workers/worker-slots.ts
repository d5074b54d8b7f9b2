/**
 * The worker pool's workers (pool.ts), one slot each: spawned with the current generation's
 * `workerData` (generations.ts), `starting` until the worker reports ready, then `idle` or `busy`.
 * A worker that dies is replaced for as long as the pool is open: after `restartDelayMs` when it
 * died at work, and with the backoff of `loadRetry` (backoff.ts) when it died while loading or
 * before doing any work, so a worker that keeps dying is retried ever more slowly, never in a hot
 * loop. Every failed load is logged with the next attempt and counted; the ready count, the load
 * failures and the time of the next attempt are in `status()` and the pool's metrics.
 */
import { type ResourceLimits, Worker } from 'node:worker_threads';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { type BackoffSchedule, backoffDelay } from './backoff.js';
import { createGenerations, type Generations } from './generations.js';
import type { FromWorker, ToWorker } from './messages.js';
import type { Job } from './pool-dispatch.js';
import { reloadFailed, replyUnreadable, workerDied } from './pool-errors.js';

export interface Slot {
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
  /** It has answered a job: it works, so its death is blamed on a job rather than on the worker. */
  answered: boolean;
}

/** How a pool's loading goes. */
export interface LoadStatus {
  /** Workers that have loaded their engines and take jobs. */
  readonly ready: number;
  /** Workers that died while loading, in a row since a worker was last ready. */
  readonly loadFailures: number;
  /** Why the last load failed, while `loadFailures` > 0. */
  readonly reason: string | undefined;
  /** When the next worker is started after a failure (ms since the epoch), while one is scheduled. */
  readonly nextAttemptAt: number | undefined;
}

export type SlotMetrics = Pick<Metrics, 'busyWorkers' | 'readyWorkers' | 'loadFailures' | 'nextLoadAttempt'>;

export interface WorkerSlotsOptions<Report> {
  readonly name: string;
  readonly size: number;
  readonly script: URL;
  readonly workerData: unknown;
  readonly resourceLimits?: ResourceLimits | undefined;
  readonly logger?: Logger | undefined;
  readonly metrics?: Partial<SlotMetrics> | undefined;
  /** Delay before replacing a worker that died at work. */
  readonly restartDelayMs: number;
  /** Delays before replacing a worker that died while loading or before any work. */
  readonly loadRetry: BackoffSchedule;
  /** Deaths while loading after which a reload is abandoned. */
  readonly reloadAttempts: number;
  readonly onReady: (slot: Slot, report: Report) => void;
  readonly onAnswer: (slot: Slot, message: Extract<FromWorker<Report>, { id: number }>) => void;
  readonly onLost: (job: Job, error: unknown) => void;
  /** A worker died while loading; `status` already counts it. */
  readonly onLoadFailed: (status: LoadStatus, worker: number, error: Error | undefined) => void;
}

export interface WorkerSlots<Report> {
  readonly generations: Generations<Report>;
  /** Starts one worker of the current generation. */
  spawn(): void;
  idle(): Slot | undefined;
  all(): Iterable<Slot>;
  status(): LoadStatus;
  stats(): { workers: number; ready: number; busy: number; restarts: number };
  /** Stops replacing workers, hands every running job to `release`, terminates every worker. */
  close(release: (job: Job) => void): Promise<void>;
}

const isReady = (slot: Slot) => slot.state === 'idle' || slot.state === 'busy';

export function createWorkerSlots<Report>(options: WorkerSlotsOptions<Report>): WorkerSlots<Report> {
  const { name, size, logger, metrics } = options;
  const slots = new Set<Slot>();
  /** Pending replacements, with when they start. */
  const timers = new Map<NodeJS.Timeout, number>();
  let nextWorkerNumber = 1;
  let restarts = 0;
  /** Deaths in a row of workers that had done no work (loading, or idle since ready). */
  let failuresInRow = 0;
  let loadFailures = 0;
  let reason: string | undefined;
  let closed = false;
  const generations = createGenerations<Report>({
    name,
    size,
    attempts: options.reloadAttempts,
    workerData: options.workerData,
    logger,
    readyWorkers(generation) {
      let ready = 0;
      for (const slot of slots) if (slot.generation === generation && isReady(slot)) ready += 1;
      return ready;
    },
    retire(which) {
      for (const slot of slots) if (which(slot.generation)) retire(slot);
    },
  });

  function status(): LoadStatus {
    let ready = 0;
    for (const slot of slots) if (isReady(slot)) ready += 1;
    const next = timers.size === 0 ? undefined : Math.min(...timers.values());
    return { ready, loadFailures, reason: loadFailures > 0 ? reason : undefined, nextAttemptAt: next };
  }

  function publish(): void {
    metrics?.readyWorkers?.set({ pool: name }, status().ready);
  }

  /** Only when a replacement is scheduled or starts: the supervisor's reloads set the gauge too. */
  function publishNextAttempt(): void {
    const next = status().nextAttemptAt;
    metrics?.nextLoadAttempt?.set({ pool: name }, next === undefined ? 0 : next / 1000);
  }

  function spawn(): void {
    const worker = new Worker(options.script, {
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
      answered: false,
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
    if (message.type !== 'ready') {
      failuresInRow = 0;
      options.onAnswer(slot, message);
      return;
    }
    if (slot.state !== 'starting') return;
    slot.state = 'idle';
    loadFailures = 0;
    logger?.info({ pool: name, worker: slot.number, loadSeconds: message.loadSeconds }, 'model worker ready');
    publish();
    options.onReady(slot, message.report);
    generations.ready(slot.generation, message.report);
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
    if (job !== undefined) options.onLost(job, replyUnreadable(name, error));
    slot.error ??= new Error(`a reply could not be deserialized: ${error.message}`, { cause: error });
    // A busy (or starting) slot stays so until the exit, so it is given no new job meanwhile.
    if (slot.state === 'idle') slot.state = 'retiring';
    void slot.worker.terminate();
  }

  function onExit(slot: Slot, code: number): void {
    const previous = slot.state;
    slot.state = 'exited';
    slots.delete(slot);
    if (closed) return;
    publish();
    if (slot.retired && slot.job === undefined) {
      logger?.info({ pool: name, worker: slot.number }, 'model worker retired after a reload');
      return;
    }
    const cause =
      slot.error === undefined ? `exit code ${code}` : `${slot.error.message} (exit code ${code})`;
    const job = slot.job;
    if (previous === 'busy') metrics?.busyWorkers?.dec();
    if (job !== undefined) {
      slot.job = undefined;
      options.onLost(job, workerDied(name, slot.error));
    }
    const loading = previous === 'starting';
    if (loading) {
      loadFailures += 1;
      reason = cause;
      metrics?.loadFailures?.inc({ pool: name });
    } else {
      logger?.error(
        { pool: name, worker: slot.number, code, err: slot.error, job: job?.kind },
        'model worker died',
      );
    }
    if (loading || (previous === 'idle' && !slot.answered)) failuresInRow += 1;
    if (loading && generations.loadFailed(slot.generation)) {
      generations.abandon(reloadFailed(name, code, slot.error));
      logLoadFailure(slot, cause, undefined);
      return;
    }
    // A worker of the generation a reload is replacing, or one the reload retired, is not replaced.
    if (slot.retired || generations.replacing(slot.generation)) {
      if (loading) logLoadFailure(slot, cause, undefined);
      return;
    }
    const delay =
      failuresInRow === 0 ? options.restartDelayMs : backoffDelay(failuresInRow, options.loadRetry);
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (closed) return;
      restarts += 1;
      spawn();
      publish();
      publishNextAttempt();
    }, delay);
    timers.set(timer, Date.now() + delay);
    publishNextAttempt();
    if (loading) logLoadFailure(slot, cause, delay);
  }

  function logLoadFailure(slot: Slot, cause: string, nextAttemptMs: number | undefined): void {
    logger?.warn(
      { pool: name, worker: slot.number, attempt: loadFailures, reason: cause, nextAttemptMs },
      nextAttemptMs === undefined ? 'model worker failed to load' : 'model worker failed to load; retrying',
    );
    options.onLoadFailed(status(), slot.number, slot.error);
  }

  function retire(slot: Slot): void {
    slot.retired = true;
    if (slot.state === 'busy') return; // terminated when its job answers
    slot.state = 'retiring';
    void slot.worker.terminate();
  }

  return {
    generations,
    spawn() {
      spawn();
      publish();
    },
    idle() {
      for (const slot of slots) if (slot.state === 'idle') return slot;
      return undefined;
    },
    all: () => slots,
    status,
    stats() {
      let ready = 0;
      let busy = 0;
      for (const slot of slots) {
        if (isReady(slot)) ready += 1;
        if (slot.state === 'busy') busy += 1;
      }
      return { workers: slots.size, ready, busy, restarts };
    },
    async close(release) {
      closed = true;
      for (const timer of timers.keys()) clearTimeout(timer);
      timers.clear();
      const exits: Promise<number>[] = [];
      for (const slot of slots) {
        if (slot.state === 'busy') metrics?.busyWorkers?.dec();
        if (slot.job !== undefined) release(slot.job);
        slot.job = undefined;
        exits.push(stopWorker(slot.worker, slot.state === 'starting' ? LOADING_GRACE_MS : SHUTDOWN_GRACE_MS));
      }
      slots.clear();
      metrics?.readyWorkers?.set({ pool: name }, 0);
      metrics?.nextLoadAttempt?.set({ pool: name }, 0);
      await Promise.allSettled(exits);
    },
  };
}

/** How long a closing pool lets a worker finish its running job before terminating it. */
const SHUTDOWN_GRACE_MS = 2000;
/** How long it lets a worker that is still loading its models finish loading (then it exits). */
const LOADING_GRACE_MS = 10_000;

/**
 * Asks a worker to finish what it runs (or its loading) and exit (see ToWorker 'shutdown');
 * terminates it if it has not exited within `graceMs` (a job that never ends, a load that hangs).
 */
async function stopWorker(worker: Worker, graceMs: number): Promise<number> {
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  worker.postMessage({ type: 'shutdown' } satisfies ToWorker);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs);
  });
  const first = await Promise.race([exited, late]);
  clearTimeout(timer);
  return first === 'late' ? worker.terminate() : first;
}
