import { type Config, ConfigError } from './config.js';
import { loadApiKeys } from './edge/api-keys.js';
import { createClientTokens, generateClientTokenSecret } from './edge/client-token.js';
import { createEdge } from './edge/edge.js';
import { type CachedSynthesizer, createCachedSynthesizer } from './engines/cached-synthesizer.js';
import { createEngineSlot, type EngineSlot } from './engines/engine-slot.js';
import { deviceProblem } from './engines/onnx-device.js';
import type { SpeechRecognizer, SpeechSynthesizer, VoiceActivityDetector } from './engines/types.js';
import { Reason, VoiceError } from './errors.js';
import { Access } from './gen/cortex/voice/v1/access_pb.js';
import { Synthesis } from './gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from './gen/cortex/voice/v1/transcription_pb.js';
import { configuredModels, modelStatus } from './models/catalog.js';
import { fetchMissingModels } from './models/fetch-missing.js';
import type { Logger } from './observability/logger.js';
import {
  createMetrics,
  type Metrics,
  type MetricsServer,
  startMetricsServer,
} from './observability/metrics.js';
import { createAccessService } from './service/access.js';
import { createAdmission } from './service/admission.js';
import { type CapacityEstimator, createCapacityEstimator } from './service/capacity.js';
import { registration } from './service/context.js';
import { createSynthesisService } from './service/synthesis.js';
import { createTranscriptionService } from './service/transcription.js';
import { createGrpcTransport } from './transport/grpc/server.js';
import { createHealthReporter, type HealthReporter } from './transport/health-reporter.js';
import { readTlsMaterial } from './transport/tls.js';
import { createWebTransport, type WebTransport } from './transport/web/server.js';
import type { WorkerTestHooks } from './workers/engine-pools.js';
import { type StartedEngines, startRemoteEngines } from './workers/engine-supervisor.js';
import { observeInference, type RemoteEngines } from './workers/remote-engines.js';

export interface VoiceEngines {
  readonly vad: EngineSlot<VoiceActivityDetector>;
  readonly recognizer: EngineSlot<SpeechRecognizer>;
  readonly synthesizer: EngineSlot<SpeechSynthesizer>;
}

export interface VoiceServer {
  readonly config: Config;
  readonly engines: VoiceEngines;
  readonly health: HealthReporter;
  readonly metrics: Metrics;
  /** The live-transcription capacity estimate behind admission by capacity and GetCapacity. */
  readonly capacity: CapacityEstimator;
  /**
   * Starts the gRPC port, the web port (unless service.web_enabled is off) and metrics; resolves
   * with the bound ports. Services stay NOT_SERVING until loadEngines().
   */
  start(): Promise<{ grpcPort: number; webPort: number | undefined; metricsPort: number | undefined }>;
  /**
   * Starts the model workers, which load and warm up their models, and hands the engines to the
   * services. An engine that cannot load (e.g. its model is missing) leaves its service NOT_SERVING
   * with the reason; the server keeps running. Once stop() has begun, it rejects with DRAINING and
   * leaves no worker behind. Call it once.
   *
   * Configured models missing from models.cache_dir are then downloaded in the background when
   * models.allow_downloads is on, with progress in the log; the inference workers are reloaded
   * once they are in place (serving meanwhile), and `modelsInstalled` settles.
   */
  loadEngines(): Promise<void>;
  /**
   * Settles when the start-up download of missing models is over: resolves once the workers serve
   * them (at once when nothing was missing or downloads are off), rejects when a download failed.
   */
  readonly modelsInstalled: Promise<void>;
  /** The model worker pools once loadEngines() has started them (diagnostics and tests). */
  readonly workerPools: StartedEngines['pools'] | undefined;
  /**
   * Graceful drain (service.drain_grace_seconds, then service.drain_flush_seconds for calls to
   * finish what they took), then everything closed, including model workers still starting.
   */
  stop(graceMs?: number, flushMs?: number): Promise<void>;
}

export interface VoiceServerOptions {
  /**
   * Enables the model workers' test-only job kinds (e.g. crashing on purpose), and with an object
   * its load hooks too. Tests only: neither the config nor the environment can turn it on.
   */
  readonly workerTestHooks?: boolean | WorkerTestHooks;
}

/** Builds the whole service from its config: engines' slots, services, transport, health, metrics. */
export function createVoiceServer(
  config: Config,
  logger: Logger,
  options: VoiceServerOptions = {},
): VoiceServer {
  const device = config.models.stt.device;
  const problem = deviceProblem(device);
  if (problem !== undefined) {
    throw new ConfigError(`config: models.stt.device = "${device}" cannot be used here: ${problem}`);
  }
  const metrics = createMetrics();
  const engines: VoiceEngines = {
    vad: createEngineSlot('voice activity detection'),
    recognizer: createEngineSlot('speech recognition'),
    synthesizer: createEngineSlot('speech synthesis'),
  };
  const admission = createAdmission(config.performance.max_concurrent_requests);
  let workers: StartedEngines | undefined;
  const capacity = createCapacityEstimator({
    workers: config.performance.workers,
    maxFinalDelayMs: config.performance.max_final_delay_ms,
    poolState: () => {
      const stats = workers?.pools.inference.stats();
      return stats === undefined ? undefined : { queued: stats.queued, idle: stats.ready - stats.busy };
    },
  });
  metrics.observeCapacity(() => capacity.snapshot());
  const health = createHealthReporter([Transcription.typeName, Synthesis.typeName]);
  const updateHealth = () => {
    health.setServiceReady(
      Transcription.typeName,
      engines.vad.current() !== undefined && engines.recognizer.current() !== undefined,
    );
    health.setServiceReady(Synthesis.typeName, engines.synthesizer.current() !== undefined);
    for (const [engine, slot] of Object.entries(engines)) {
      metrics.engineReady.set({ engine }, slot.current() === undefined ? 0 : 1);
    }
  };
  updateHealth();
  for (const slot of [engines.vad, engines.recognizer, engines.synthesizer]) slot.onChange(updateHealth);

  // One edge for both ports: the same keys, tokens, limits, call cap, metrics and drain.
  if (config.security.client_tokens.secret === undefined) {
    logger.warn(
      'no security.client_tokens.secret (VOICE_TOKEN_SECRET): client tokens are signed with a random key and work only on this instance until it restarts',
    );
  }
  const tokens = createClientTokens({
    secret: config.security.client_tokens.secret ?? generateClientTokenSecret(),
    ttlSeconds: config.security.client_tokens.ttl_seconds,
  });
  const edge = createEdge({
    config,
    logger,
    metrics,
    apiKeys: loadApiKeys(config.security),
    tokens,
    // A session's audio arrives as one AppendSessionAudio call a chunk (10 a second from a
    // microphone): the session is the call start that security.rate_limit counts, and a drain
    // lets its audio through so that it can finish within the grace period.
    continuations: [`/${Transcription.typeName}/${Transcription.method.appendSessionAudio.name}`],
    // The calls that start sending audio for transcription wait while their key's audio budget
    // (max_audio_seconds_per_minute) is spent; the audio of streams and sessions already open
    // (AppendSessionAudio included) is counted but never refused.
    audioMethods: [
      Transcription.method.transcribe,
      Transcription.method.startTranscriptionSession,
      Transcription.method.transcribeFile,
    ].map((method) => `/${Transcription.typeName}/${method.name}`),
  });
  const tls = readTlsMaterial(config.security.tls);
  const services = [
    registration(
      Transcription,
      createTranscriptionService(engines, config, {
        admission,
        onAudio: (seconds, ctx) => {
          metrics.audioSeconds.inc({ direction: 'in' }, seconds);
          edge.chargeAudio(ctx, seconds);
        },
        capacity,
        onCapacityRefusal: (model) => metrics.admissionRefusals.inc({ model }),
        sessions: {
          gapTimeoutMs: config.service.sessions.gap_timeout_ms,
          idleTimeoutMs: config.service.sessions.idle_timeout_ms,
          maxPerCaller: config.service.sessions.max_per_caller,
        },
      }),
    ),
    registration(
      Synthesis,
      createSynthesisService(engines, config, {
        admission,
        onAudio: (seconds) => metrics.audioSeconds.inc({ direction: 'out' }, seconds),
        onInterruption: () => metrics.ttsInterruptions.inc(),
      }),
    ),
    registration(
      Access,
      createAccessService({ tokens, maxTtlSeconds: config.security.client_tokens.max_ttl_seconds }),
    ),
  ];
  const transport = createGrpcTransport({ config, logger, metrics, health, services, edge, tls });
  const web: WebTransport | undefined = config.service.web_enabled
    ? createWebTransport({ config, edge, health, services, tls })
    : undefined;
  let metricsServer: MetricsServer | undefined;
  /** The pools being started; stop() waits for them so that none outlives the server. */
  let starting: Promise<StartedEngines> | undefined;
  let stopping = false;
  const downloads = new AbortController();
  let installed: { resolve: () => void; reject: (error: unknown) => void } | undefined;
  const modelsInstalled = new Promise<void>((resolve, reject) => {
    installed = { resolve, reject };
  });
  // Nobody may be waiting for it; a failed download is logged where it happens.
  modelsInstalled.catch(() => {});
  const stoppedWhileLoading = () =>
    new VoiceError(Reason.Draining, 'the server stopped before the model workers were ready');

  /** Seeds the capacity estimate with the workers' calibration; says when a model cannot meet the bound. */
  function calibrate(costs: RemoteEngines['recognitionCosts']): void {
    for (const [model, cost] of Object.entries(costs)) capacity.calibrate(model, cost);
    const bound = config.performance.max_final_delay_ms;
    for (const model of capacity.snapshot().models) {
      if (bound === 0 || model.allowedFinalDelayMs <= bound) continue;
      const alone = Math.round(model.allowedFinalDelayMs - bound);
      logger.warn(
        { model: model.model, fixedSeconds: model.fixedSeconds, perAudioSecond: model.secondsPerAudioSecond },
        `the speech recognition model "${model.model}" takes about ${alone} ms per utterance on an idle worker, past performance.max_final_delay_ms = ${bound}; its streams are admitted while the expected wait before their finals stays within ${bound} ms`,
      );
    }
  }

  /** The reason last logged for each engine that is not available. */
  const unavailableFor = new Map<string, string>();
  /** The workers' synthesizer behind the cache in the slot: the cache is kept while it is the same. */
  let cachedFor: { synthesizer: unknown; cached: CachedSynthesizer } | undefined;

  /** Called at start-up and on every change of the workers' engines (a pool recovered or went down). */
  function fillSlots({ vad, recognizer, synthesizer, unavailable, recognitionCosts }: RemoteEngines): void {
    calibrate(recognitionCosts);
    const fill = <T>(slot: EngineSlot<T>, engine: T | undefined, why: string | undefined) => {
      if (engine !== undefined) {
        if (slot.current() !== engine) slot.set(engine);
        unavailableFor.delete(slot.name);
        return;
      }
      const reason = why ?? 'it did not load';
      slot.markUnavailable(reason);
      // Said once per reason: the retries of a pool log their own line per attempt.
      if (unavailableFor.get(slot.name) === reason) return;
      unavailableFor.set(slot.name, reason);
      logger.warn({ engine: slot.name, reason }, 'engine not available');
    };
    fill(engines.vad, vad, unavailable.vad);
    fill(engines.recognizer, recognizer, unavailable.recognizer);
    if (synthesizer !== undefined && cachedFor?.synthesizer !== synthesizer) {
      cachedFor = {
        synthesizer,
        cached: createCachedSynthesizer(synthesizer, {
          maxBytes: config.performance.tts_cache_mb * 1024 * 1024,
          onLookup: (result) => metrics.ttsCache.inc({ result }),
        }),
      };
    }
    fill(engines.synthesizer, synthesizer && cachedFor?.cached, unavailable.synthesizer);
    const cache = cachedFor?.cached;
    metrics.observeTtsCache(() => cache?.cachedBytes ?? 0);
  }

  /** Downloads what is missing, then reloads the inference workers so that they serve it. */
  async function installMissing(
    started: StartedEngines,
    missing: Parameters<typeof fetchMissingModels>[0],
  ): Promise<void> {
    try {
      await fetchMissingModels(missing, {
        hubUrl: config.models.hub_url,
        logger,
        signal: downloads.signal,
      });
      if (stopping) return;
      // The slots are filled by the onChange listener.
      await started.reloadInference();
      logger.info({ health: health.status('') }, 'downloaded models loaded');
    } catch (error) {
      if (stopping) return;
      const why = error instanceof Error ? error.message : String(error);
      logger.error({ hub: config.models.hub_url }, `model download failed: ${why}`);
      const recognizer = engines.recognizer;
      if (recognizer.current() === undefined) {
        recognizer.markUnavailable(
          `${missing.map((model) => `${model.id} is missing from ${model.folder}`).join('; ')}; ${why}`,
        );
      }
      throw error;
    }
  }

  return {
    config,
    engines,
    health,
    metrics,
    capacity,
    get workerPools() {
      return workers?.pools;
    },
    async start() {
      const grpcPort = await transport.listen();
      const webPort = await web?.listen();
      if (config.monitoring.enabled) {
        metricsServer = await startMetricsServer(metrics.registry, {
          host: config.monitoring.host,
          port: config.monitoring.prometheus_port,
          path: config.monitoring.metrics_endpoint,
        });
      }
      health.markStarted();
      return { grpcPort, webPort, metricsPort: metricsServer?.port };
    },
    async loadEngines() {
      if (stopping) throw stoppedWhileLoading();
      if (starting !== undefined) throw new Error('loadEngines() was already called');
      starting = startRemoteEngines(config, {
        metrics,
        logger,
        testHooks: options.workerTestHooks ?? false,
        onJobDone: observeInference(capacity),
        loadRetry: {
          initialMs: config.models.load_retry.initial_delay_ms,
          maxMs: config.models.load_retry.max_delay_ms,
        },
      });
      const started = await starting;
      if (stopping) {
        // stop() closes them too; close() is idempotent and both wait for the workers to exit.
        await started.close();
        throw stoppedWhileLoading();
      }
      workers = started;
      fillSlots(started.engines);
      started.onChange(fillSlots);
      const missing = modelStatus(configuredModels(config)).filter((model) => model.missing.length > 0);
      if (missing.length === 0 || !config.models.allow_downloads) {
        installed?.resolve();
        return;
      }
      const names = missing.map((model) => model.id).join(', ');
      if (engines.recognizer.current() === undefined) {
        engines.recognizer.markUnavailable(`downloading ${names} from ${config.models.hub_url}`);
      }
      const installing = installMissing(started, missing);
      // Retrying the inference workers' load meanwhile would only race the download.
      started.holdInferenceRetries(installing);
      installing.then(
        () => installed?.resolve(),
        (error: unknown) => installed?.reject(error),
      );
    },
    modelsInstalled,
    async stop(
      graceMs = config.service.drain_grace_seconds * 1000,
      flushMs = config.service.drain_flush_seconds * 1000,
    ) {
      stopping = true;
      downloads.abort(new VoiceError(Reason.Draining, 'the server is stopping'));
      // Both ports drain together: the shared edge waits for the calls of either.
      await Promise.all([transport.drain(graceMs, flushMs), web?.drain(graceMs, flushMs)]);
      // A start that fails has already closed its pools.
      const started = workers ?? (await starting?.catch(() => undefined));
      await started?.close();
      await metricsServer?.close();
    },
  };
}
