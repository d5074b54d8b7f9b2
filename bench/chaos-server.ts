/**
 * The server for the soak and chaos runs: server/main.ts's start-up and drain, with an IPC channel
 * from the driving process and, with --test-hooks, the model workers' test-only job kinds
 * (`workerTestHooks`: crashes, and each worker thread's own memory figures). Fault injection lives here, in bench code, never in production config.
 *
 *   node dist/bench/chaos-server.js --config file.yaml [--test-hooks]   (spawned with an IPC channel)
 *
 * Messages in (`ChaosCommand`): crash a model worker (`crash`: a `crash` job, which the pool hands
 * to whichever worker is free next; `arm`: the next recognition's worker exits in the middle of
 * it), `stats` (heap, handles, event-loop delay, pool restarts), `gc` (with --expose-gc) and
 * `snapshot` (v8.writeHeapSnapshot). Each gets one `ChaosReply` with the same `id`.
 */

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { getHeapStatistics, writeHeapSnapshot } from 'node:v8';
import { createVoiceServer } from '../server/app.js';
import { loadConfig } from '../server/config.js';
import type { CachedSynthesizer } from '../server/engines/cached-synthesizer.js';
import { createLogger } from '../server/observability/logger.js';
import { installShutdown } from '../server/shutdown.js';
import type { WorkerMemory } from '../server/workers/messages.js';

export type ChaosCommand =
  | { readonly id: number; readonly type: 'crash'; readonly pool: 'vad' | 'inference' }
  | { readonly id: number; readonly type: 'arm' }
  | { readonly id: number; readonly type: 'stats'; readonly workers?: boolean }
  | { readonly id: number; readonly type: 'gc' }
  | { readonly id: number; readonly type: 'snapshot'; readonly file: string };

export interface ServerStats {
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  readonly heapTotalBytes: number;
  readonly externalBytes: number;
  readonly arrayBuffersBytes: number;
  /** Handles and requests keeping the loop alive (process.getActiveResourcesInfo()), by type. */
  readonly resources: Record<string, number>;
  /** Event-loop delay since the previous `stats`, ms. */
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
  readonly restarts: { readonly vad: number; readonly inference: number };
  readonly mallocedBytes: number;
  /** Audio the sentence cache holds (performance.tts_cache_mb bounds it). */
  readonly ttsCacheBytes: number;
  /** Each model worker thread's isolate (with --test-hooks and `workers: true`), by pool. */
  readonly workers?: readonly (WorkerMemory & { readonly pool: string })[];
}

export type ChaosReply =
  | { readonly id: number; readonly ok: true; readonly stats?: ServerStats; readonly file?: string }
  | { readonly id: number; readonly ok: false; readonly error: string };

const { values } = parseArgs({
  options: { config: { type: 'string', short: 'c' }, 'test-hooks': { type: 'boolean' } },
  strict: true,
});
const config = loadConfig({ file: values.config });
const logger = createLogger(config.logging);
// The soak runs the workers as production does unless it asks for their memory figures; the
// chaos run needs the crash job kinds.
const testHooks = values['test-hooks'] === true;
const server = createVoiceServer(config, logger, { workerTestHooks: testHooks });
const { grpcPort, webPort, metricsPort } = await server.start();
logger.info({ grpcPort, webPort, metricsPort, host: config.service.host }, 'listening');
server.loadEngines().then(
  () => logger.info({ health: server.health.status('') }, 'engines loaded'),
  (error: unknown) => logger.error({ err: error }, 'model workers failed to start'),
);

const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
const never = new AbortController().signal;

process.on('message', (message: ChaosCommand) => {
  handle(message).then(
    (reply) => process.send?.(reply),
    (error: unknown) =>
      process.send?.({
        id: message.id,
        ok: false,
        error: error instanceof Error ? error.message : String(error),
      } satisfies ChaosReply),
  );
});

async function handle(command: ChaosCommand): Promise<ChaosReply> {
  const pools = server.workerPools;
  switch (command.type) {
    case 'crash':
    case 'arm': {
      if (pools === undefined) throw new Error('the model workers are not started');
      const pool = command.type === 'crash' ? pools[command.pool] : pools.inference;
      // Test-only job kinds: not in the engines' job map, so the call is untyped here.
      const run = pool.run.bind(pool) as unknown as (
        kind: string,
        payload: unknown,
        options: { priority: number; signal: AbortSignal },
      ) => Promise<unknown>;
      const job =
        command.type === 'crash'
          ? run('crash', { mode: 'exit' }, { priority: 0, signal: never })
          : run('crashOnNextRecognize', null, { priority: 0, signal: never });
      // A crash job never answers: its worker dies and the pool fails it with WORKER_CRASHED.
      await job.catch(() => {});
      return { id: command.id, ok: true };
    }
    case 'stats': {
      const main = stats();
      if (command.workers !== true || !testHooks || pools === undefined)
        return { id: command.id, ok: true, stats: main };
      return { id: command.id, ok: true, stats: { ...main, workers: await workerMemory(pools) } };
    }
    case 'gc': {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (gc === undefined) throw new Error('start the server with --expose-gc');
      gc();
      return { id: command.id, ok: true };
    }
    case 'snapshot':
      return { id: command.id, ok: true, file: writeHeapSnapshot(command.file) };
  }
}

/**
 * Asks every worker for its memory: as many `memory` jobs at once as the pool has workers, each
 * taken by a free worker (a busy pool may answer twice from one thread; duplicates are dropped).
 */
async function workerMemory(
  pools: NonNullable<typeof server.workerPools>,
): Promise<(WorkerMemory & { pool: string })[]> {
  const ask = async (name: 'vad' | 'inference') => {
    const pool = pools[name];
    const run = pool.run.bind(pool) as unknown as (
      kind: string,
      payload: unknown,
      options: { priority: number; signal: AbortSignal },
    ) => Promise<WorkerMemory>;
    const answers = await Promise.all(
      Array.from({ length: pool.stats().workers }, () =>
        run('memory', {}, { priority: 2, signal: AbortSignal.timeout(10_000) }).catch(() => undefined),
      ),
    );
    const byThread = new Map<number, WorkerMemory & { pool: string }>();
    for (const answer of answers)
      if (answer !== undefined) byThread.set(answer.threadId, { ...answer, pool: name });
    return [...byThread.values()];
  };
  return [...(await ask('vad')), ...(await ask('inference'))];
}

function stats(): ServerStats {
  const memory = process.memoryUsage();
  const resources: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) resources[kind] = (resources[kind] ?? 0) + 1;
  const result: ServerStats = {
    rssBytes: memory.rss,
    heapUsedBytes: memory.heapUsed,
    heapTotalBytes: memory.heapTotal,
    externalBytes: memory.external,
    arrayBuffersBytes: memory.arrayBuffers,
    resources,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    loopDelayMaxMs: loopDelay.max / 1e6,
    restarts: {
      vad: server.workerPools?.vad.stats().restarts ?? 0,
      inference: server.workerPools?.inference.stats().restarts ?? 0,
    },
    mallocedBytes: getHeapStatistics().malloced_memory,
    ttsCacheBytes:
      (server.engines.synthesizer.current() as Partial<CachedSynthesizer> | undefined)?.cachedBytes ?? 0,
  };
  loopDelay.reset();
  return result;
}

const { stop } = installShutdown(server, config, logger);
// The driving process went away: drain as on SIGTERM rather than linger.
process.on('disconnect', () => stop('disconnect'));
