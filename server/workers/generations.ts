/**
 * The worker pool's generations and the reload from one to the next (pool.ts owns the workers, this
 * the bookkeeping). Every worker is spawned with the current `workerData` and tagged with the current
 * generation. A reload moves both on; it is finished once `size` workers of the new generation are
 * ready, when the older workers are retired and the reload resolves with the first new worker's
 * report; it is abandoned once new workers have died `attempts` times while loading, when the
 * previous `workerData` and generation come back, the new workers are retired and the reload
 * rejects. One reload at a time.
 */
import type { Logger } from '../observability/logger.js';

export interface GenerationsOptions {
  /** Names the pool in logs. */
  readonly name: string;
  /** Workers a generation needs ready before it takes over. */
  readonly size: number;
  /** Deaths while loading after which a reload is abandoned. */
  readonly attempts: number;
  readonly workerData: unknown;
  readonly logger?: Logger | undefined;
  /** Workers of `generation` that are ready (idle or busy). */
  readonly readyWorkers: (generation: number) => number;
  /** Retires the workers whose generation `which` picks: they exit after their running job. */
  readonly retire: (which: (generation: number) => boolean) => void;
}

export interface Generations<Report> {
  /** What a worker spawned now is given. */
  readonly workerData: unknown;
  /** The generation of a worker spawned now. */
  readonly current: number;
  /** Whether a reload is under way. */
  readonly reloading: boolean;
  /**
   * Starts a reload: the next generation, with `data` unless it is undefined. `settle` hears how it
   * ends. The caller checks `reloading` first and then spawns the new workers.
   */
  begin(data: unknown, settle: { resolve(report: Report): void; reject(error: unknown): void }): void;
  /** A worker of `generation` is ready; it may finish the reload. */
  ready(generation: number, report: Report): void;
  /** A worker of `generation` died while loading: true when that abandons the reload. */
  loadFailed(generation: number): boolean;
  /** Abandons the reload under way (if any) with `error`: the previous workers keep serving. */
  abandon(error: unknown): void;
  /** Rejects the reload under way (if any) with `error` as the pool closes: nothing is retired. */
  cancel(error: unknown): void;
  /** Whether `generation` is being replaced by a reload under way (its workers are not restarted). */
  replacing(generation: number): boolean;
}

interface Reload<Report> {
  readonly resolve: (report: Report) => void;
  readonly reject: (error: unknown) => void;
  readonly previous: { readonly workerData: unknown; readonly generation: number };
  report: Report | undefined;
  failures: number;
}

export function createGenerations<Report>(options: GenerationsOptions): Generations<Report> {
  const { name, size, logger } = options;
  let workerData = options.workerData;
  let generation = 0;
  let reloading: Reload<Report> | undefined;

  /** Once `size` workers of the new generation are ready, the older ones are retired. */
  function finishWhenReady(): void {
    const current = reloading;
    if (current === undefined || current.report === undefined) return;
    if (options.readyWorkers(generation) < size) return;
    reloading = undefined;
    options.retire((g) => g !== generation);
    current.resolve(current.report);
  }

  return {
    get workerData() {
      return workerData;
    },

    get current() {
      return generation;
    },

    get reloading() {
      return reloading !== undefined;
    },

    begin(data, { resolve, reject }) {
      const previous = { workerData, generation };
      reloading = { resolve, reject, previous, report: undefined, failures: 0 };
      if (data !== undefined) workerData = data;
      generation += 1;
      logger?.info({ pool: name, workers: size }, 'reloading model workers');
    },

    ready(from, report) {
      if (reloading === undefined || from !== generation) return;
      reloading.report ??= report;
      finishWhenReady();
    },

    loadFailed(from) {
      if (reloading === undefined || from !== generation) return false;
      reloading.failures += 1;
      return reloading.failures >= options.attempts;
    },

    abandon(error) {
      const current = reloading;
      if (current === undefined) return;
      reloading = undefined;
      const failed = generation;
      workerData = current.previous.workerData;
      generation = current.previous.generation;
      options.retire((g) => g === failed);
      logger?.error({ pool: name, err: error }, 'reload abandoned; the previous model workers keep serving');
      current.reject(error);
    },

    cancel(error) {
      const current = reloading;
      reloading = undefined;
      current?.reject(error);
    },

    replacing: (from) => reloading !== undefined && from !== generation,
  };
}
