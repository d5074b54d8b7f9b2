/**
 * Starts the two model pools (remote-engines.ts) and keeps them trying until they hold every engine
 * a service needs, for as long as the server runs. A pool whose workers die while loading retries
 * by itself (worker-slots.ts) and is picked up here once it is ready. A pool whose workers load
 * without an engine (a model folder missing or corrupt: the worker reports why) is reloaded with
 * backoff (backoff.ts) until the engine loads, so a model installed or repaired while the server
 * runs is served without a restart. Each failed attempt is logged in one warn line (pool, attempt,
 * reason, nextAttemptMs) and counted in the load-failure metric. Engines that only partly loaded
 * (one of two recognition models, a neural voice) are not retried: their service serves.
 * Listeners hear of every change of the engines, including a pool going down (no worker ready and
 * its loads failing) and coming back, so that health follows.
 */
import type { Config } from '../config.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { type BackoffSchedule, backoffDelay, DEFAULT_LOAD_RETRY } from './backoff.js';
import { createEnginePools, type WorkerTestHooks } from './engine-pools.js';
import type { EngineReport } from './messages.js';
import type { FinishedJob, LoadStatus, PoolMetrics } from './pool.js';
import { createRemoteEngines, type EnginePool, type RemoteEngines } from './remote-engines.js';

export interface StartedEngines {
  /** The engines over the pools as they are now. */
  readonly engines: RemoteEngines;
  readonly pools: { readonly vad: EnginePool; readonly inference: EnginePool };
  /** Calls `listener` with the engines whenever they change after start-up. */
  onChange(listener: (engines: RemoteEngines) => void): void;
  /**
   * Replaces the inference workers by ones that load their engines anew (models installed since
   * start-up), after any attempt under way, serving meanwhile; resolves with the engines then.
   */
  reloadInference(): Promise<RemoteEngines>;
  /** Holds the inference pool's retries until `until` settles (a download under way reloads it). */
  holdInferenceRetries(until: Promise<unknown>): void;
  /** Stops retrying and closes both pools; resolves once every worker has exited. */
  close(): Promise<void>;
}

export interface SupervisorDeps {
  readonly metrics?: PoolMetrics & Partial<Pick<Metrics, 'loadFailures' | 'nextLoadAttempt'>>;
  readonly logger?: Logger;
  readonly testHooks?: boolean | WorkerTestHooks;
  /** Told of every job the inference workers answer, with its measured compute time. */
  readonly onJobDone?: (job: FinishedJob) => void;
  /** Delays between attempts (models.load_retry). */
  readonly loadRetry?: BackoffSchedule;
}

interface Supervised {
  readonly name: 'vad' | 'inference';
  /** How messages name its workers. */
  readonly label: string;
  readonly pool: EnginePool;
  /** What its workers reported; undefined until a worker loaded. */
  report: EngineReport | undefined;
  /** Why `start()` gave up, until a worker loads. */
  startFailure: string | undefined;
  failures: number;
  timer: NodeJS.Timeout | undefined;
  nextAttemptAt: number | undefined;
  attempt: Promise<void> | undefined;
  hold: Promise<unknown> | undefined;
  /** What the report lacks of what a service needs, or undefined. */
  readonly missing: (report: EngineReport) => string | undefined;
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
const isDown = (status: LoadStatus) => status.ready === 0 && status.loadFailures > 0;

/** Builds and starts both pools from the config, wraps them as engines and keeps them recovering. */
export async function startRemoteEngines(config: Config, deps: SupervisorDeps): Promise<StartedEngines> {
  const { logger, metrics } = deps;
  const schedule = deps.loadRetry ?? DEFAULT_LOAD_RETRY;
  const pools = createEnginePools(config, { ...deps, loadRetry: schedule });
  const supervised = (
    name: Supervised['name'],
    label: string,
    missing: Supervised['missing'],
  ): Supervised => ({
    name,
    label,
    pool: pools[name],
    report: undefined,
    startFailure: undefined,
    failures: 0,
    timer: undefined,
    nextAttemptAt: undefined,
    attempt: undefined,
    hold: undefined,
    missing,
  });
  const vad = supervised('vad', 'VAD', (report) =>
    report.vad?.available === false ? report.vad.reason : undefined,
  );
  const inference = supervised('inference', 'inference', (report) => {
    const lacking: string[] = [];
    if (report.asr?.available === false) lacking.push(`speech recognition: ${report.asr.reason}`);
    if (report.tts?.available === false) lacking.push(`speech synthesis: ${report.tts.reason}`);
    return lacking.length === 0 ? undefined : lacking.join('; ');
  });
  const listeners: ((engines: RemoteEngines) => void)[] = [];
  let closed = false;
  let built:
    | { vad: EngineReport | undefined; inference: EngineReport | undefined; engines: RemoteEngines }
    | undefined;
  let published = '';

  /** The engines over the reports as they are, without those of a pool that is down. */
  function compose(): RemoteEngines {
    if (built === undefined || built.vad !== vad.report || built.inference !== inference.report) {
      built = {
        vad: vad.report,
        inference: inference.report,
        engines: createRemoteEngines({
          vad: { pool: pools.vad, report: vad.report ?? {} },
          inference: { pool: pools.inference, report: inference.report ?? {} },
        }),
      };
    }
    const engines = { ...built.engines, unavailable: { ...built.engines.unavailable } };
    for (const one of [vad, inference]) {
      const status = one.pool.status();
      let why: string | undefined;
      if (one.report === undefined) {
        why = `the ${one.label} workers failed to start: ${one.startFailure ?? status.reason ?? 'they are loading'}; retrying`;
      } else if (isDown(status)) {
        why = `the ${one.label} workers keep failing while loading: ${status.reason}; retrying`;
      }
      if (why === undefined) continue;
      if (one === vad) {
        engines.vad = undefined;
        engines.unavailable.vad = why;
      } else {
        engines.recognizer = undefined;
        engines.synthesizer = undefined;
        engines.unavailable.recognizer = why;
        engines.unavailable.synthesizer = why;
      }
    }
    return engines;
  }

  function publish(): void {
    if (closed) return;
    const engines = compose();
    const key = keyOf(engines);
    if (key === published) return;
    published = key;
    for (const listener of listeners) listener(engines);
  }

  function keyOf(engines: RemoteEngines): string {
    return JSON.stringify([
      engines.vad !== undefined,
      engines.recognizer !== undefined,
      engines.synthesizer !== undefined,
      engines.unavailable,
      // A new report (a reload) means new engine objects, even when as available as before.
      [vad.report, inference.report].map((report) => (report === undefined ? 0 : reportIds.get(report))),
    ]);
  }
  const reportIds = new WeakMap<EngineReport, number>();
  let nextReportId = 1;
  function setReport(one: Supervised, report: EngineReport): void {
    if (!reportIds.has(report)) reportIds.set(report, nextReportId++);
    one.report = report;
    one.startFailure = undefined;
  }

  /** Schedules the next reload while the pool lacks an engine; forgets past failures once it has all. */
  function check(one: Supervised, failedReload?: unknown): void {
    if (closed || one.report === undefined || one.timer !== undefined) return;
    const lacking = failedReload === undefined ? one.missing(one.report) : messageOf(failedReload);
    if (lacking === undefined) {
      if (one.failures > 0) logger?.info({ pool: one.name, attempts: one.failures + 1 }, 'model pool loaded');
      one.failures = 0;
      return;
    }
    one.failures += 1;
    // A reload whose workers died is already counted, worker by worker, by the pool.
    if (failedReload === undefined) metrics?.loadFailures?.inc({ pool: one.name });
    const delay = backoffDelay(one.failures, schedule);
    logger?.warn(
      { pool: one.name, attempt: one.failures, reason: lacking, nextAttemptMs: delay },
      'model pool did not load every engine; retrying',
    );
    one.nextAttemptAt = Date.now() + delay;
    metrics?.nextLoadAttempt?.set({ pool: one.name }, one.nextAttemptAt / 1000);
    one.timer = setTimeout(() => {
      one.timer = undefined;
      one.nextAttemptAt = undefined;
      metrics?.nextLoadAttempt?.set({ pool: one.name }, 0);
      retry(one);
    }, delay);
  }

  /** A scheduled retry: once any hold is over, and only while the pool still lacks an engine. */
  function retry(one: Supervised): void {
    const hold = one.hold;
    if (hold === undefined) {
      void attempt(one, false);
      return;
    }
    const after = () => {
      if (one.hold === hold) one.hold = undefined;
      retry(one);
    };
    hold.then(after, after);
  }

  /** One reload, after any under way; `now`: asked for (done even when nothing lacks), not a retry. */
  function attempt(one: Supervised, now: boolean): Promise<void> {
    const previous = one.attempt ?? Promise.resolve();
    const run = previous.then(async () => {
      if (closed || one.report === undefined) return;
      if (!now && one.missing(one.report) === undefined) return;
      if (one.timer !== undefined) {
        clearTimeout(one.timer);
        one.timer = undefined;
      }
      let failure: unknown;
      try {
        setReport(one, await one.pool.reload());
      } catch (error) {
        failure = error;
      }
      if (closed) return;
      publish();
      check(one, failure);
      if (now && failure !== undefined) throw failure;
    });
    one.attempt = run.catch(() => undefined);
    return run;
  }

  const [vadStart, inferenceStart] = await Promise.allSettled([pools.vad.start(), pools.inference.start()]);
  for (const [one, started] of [
    [vad, vadStart],
    [inference, inferenceStart],
  ] as const) {
    if (started.status === 'fulfilled') {
      setReport(one, started.value);
    } else {
      one.startFailure = messageOf(started.reason);
      // The pool keeps trying; it is picked up once a worker has loaded.
      one.pool.whenReady().then(
        (report) => {
          setReport(one, report);
          publish();
          check(one);
        },
        () => undefined,
      );
    }
    one.pool.onStatus(() => publish());
  }
  // Listeners hear of changes after this start.
  published = keyOf(compose());
  for (const one of [vad, inference]) check(one);

  return {
    get engines() {
      return compose();
    },
    pools,
    onChange(listener) {
      listeners.push(listener);
    },
    async reloadInference() {
      await attempt(inference, true);
      return compose();
    },
    holdInferenceRetries(until) {
      inference.hold = until;
    },
    async close() {
      closed = true;
      for (const one of [vad, inference]) {
        if (one.timer !== undefined) clearTimeout(one.timer);
        one.timer = undefined;
        metrics?.nextLoadAttempt?.set({ pool: one.name }, 0);
      }
      await Promise.all([pools.vad.close(), pools.inference.close()]);
    },
  };
}
