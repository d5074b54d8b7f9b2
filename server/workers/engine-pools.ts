/**
 * The two model pools from the service's config (topology in remote-engines.ts): the workerData of
 * each, with the test-only hooks code may add, and the pools themselves.
 */
import type { Config } from '../config.js';
import type { Logger } from '../observability/logger.js';
import type { BackoffSchedule } from './backoff.js';
import type { EngineJobs, EngineReport, EngineWorkerData } from './messages.js';
import { createWorkerPool, type FinishedJob, type PoolMetrics } from './pool.js';
import type { EnginePool } from './remote-engines.js';

/** A VITS model's language from an MMS-style id (`facebook/mms-tts-eng` → `en`); `und` otherwise. */
function languageOfModel(id: string): string {
  const code = /mms-tts-([a-z]{3})$/i.exec(id)?.[1]?.toLowerCase();
  if (code === undefined) return 'und';
  // ISO 639-3 to the contract's ISO 639-1 where one exists (eng → en, deu → de, cmn → zh).
  return Intl.getCanonicalLocales(code)[0] ?? code;
}

const SILERO_VERSIONS = { silero_v4: 'v4', silero_v5: 'v5', silero_v6: 'v6' } as const;

/** Test-only hooks of the engine workers; set by code (VoiceServerOptions), never by config. */
export interface WorkerTestHooks {
  /** The first `times` workers of `pool` to start die while loading (EngineWorkerData.failLoads). */
  readonly failLoads?: {
    readonly pool: 'vad' | 'inference';
    readonly counter: string;
    readonly times: number;
  };
}

/** The workerData of each pool, from the service's config. */
export function engineWorkerData(
  config: Config,
  testHooks: boolean | WorkerTestHooks = false,
): { vad: EngineWorkerData; inference: EngineWorkerData } {
  const { models, performance } = config;
  const threads = performance.inference_threads;
  const hooks = (pool: 'vad' | 'inference'): Partial<EngineWorkerData> => {
    if (testHooks === false) return {};
    const failLoads = testHooks === true ? undefined : testHooks.failLoads;
    if (failLoads?.pool !== pool) return pool === 'inference' ? { testHooks: true } : {};
    return { testHooks: true, failLoads: { counter: failLoads.counter, times: failLoads.times } };
  };
  return {
    vad: { ...hooks('vad'), vad: { version: SILERO_VERSIONS[models.vad.model], threads: 1 } },
    inference: {
      ...hooks('inference'),
      asr: {
        cacheDir: models.cache_dir,
        // Missing models are fetched by the main thread at start-up (with progress in the log),
        // never by the library inside a worker.
        allowRemote: false,
        defaultModel: models.stt.model,
        englishModel: models.stt.english_model === '' ? undefined : models.stt.english_model,
        dtype: models.stt.dtype,
        allowedModels: models.stt.allowed_models,
        device: models.stt.device,
        threads,
      },
      tts: {
        espeak: true,
        defaultVoice: models.tts.voice,
        neural: {
          cacheDir: models.cache_dir,
          allowRemote: false,
          models: models.tts.neural_models.map((id) => ({ id, language: languageOfModel(id) })),
          threads,
        },
        ...(models.tts.kokoro.enabled
          ? {
              kokoro: {
                cacheDir: models.cache_dir,
                model: models.tts.kokoro.model,
                dtype: models.tts.kokoro.dtype,
                voices: models.tts.kokoro.voices,
                threads,
              },
            }
          : {}),
      },
    },
  };
}

export interface EnginePoolsDeps {
  readonly metrics?: PoolMetrics | undefined;
  readonly logger?: Logger | undefined;
  readonly testHooks?: boolean | WorkerTestHooks | undefined;
  /** Told of every job the inference workers answer, with its measured compute time. */
  readonly onJobDone?: ((job: FinishedJob) => void) | undefined;
  readonly loadRetry: BackoffSchedule;
}

/** The VAD pool (one worker) and the inference pool (performance.workers), not started. */
export function createEnginePools(
  config: Config,
  deps: EnginePoolsDeps,
): { readonly vad: EnginePool; readonly inference: EnginePool } {
  const data = engineWorkerData(config, deps.testHooks);
  const common = {
    queueSize: config.performance.request_queue_size,
    loadRetry: deps.loadRetry,
    ...(deps.metrics === undefined ? {} : { metrics: deps.metrics }),
    ...(deps.logger === undefined ? {} : { logger: deps.logger }),
  };
  return {
    vad: createWorkerPool<EngineJobs, EngineReport>({
      ...common,
      // A stream has at most one VAD batch in flight, so the queue only needs room for every stream.
      queueSize: config.performance.max_concurrent_requests,
      queueSizeKey: 'performance.max_concurrent_requests',
      name: 'vad',
      size: 1,
      workerData: data.vad,
    }),
    inference: createWorkerPool<EngineJobs, EngineReport>({
      ...common,
      name: 'inference',
      size: config.performance.workers,
      workerData: data.inference,
      ...(deps.onJobDone === undefined ? {} : { onJobDone: deps.onJobDone }),
    }),
  };
}
