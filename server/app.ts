import type { Config } from './config.js';
import { createEngineSlot, type EngineSlot } from './engines/engine-slot.js';
import type { SpeechRecognizer, SpeechSynthesizer, VoiceActivityDetector } from './engines/types.js';
import { Synthesis } from './gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from './gen/cortex/voice/v1/transcription_pb.js';
import type { Logger } from './observability/logger.js';
import {
  createMetrics,
  type Metrics,
  type MetricsServer,
  startMetricsServer,
} from './observability/metrics.js';
import { registration } from './service/context.js';
import { createSynthesisService } from './service/synthesis.js';
import { createTranscriptionService } from './service/transcription.js';
import { createHealthReporter, type HealthReporter } from './transport/grpc/health.js';
import { createGrpcTransport } from './transport/grpc/server.js';

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
  /** Starts gRPC and metrics; resolves with the bound ports. */
  start(): Promise<{ grpcPort: number; metricsPort: number | undefined }>;
  /** Graceful drain, then everything closed. */
  stop(graceMs?: number): Promise<void>;
}

/** Builds the whole service from its config: engines' slots, services, transport, health, metrics. */
export function createVoiceServer(config: Config, logger: Logger): VoiceServer {
  const metrics = createMetrics();
  const engines: VoiceEngines = {
    vad: createEngineSlot('voice activity detection'),
    recognizer: createEngineSlot('speech recognition'),
    synthesizer: createEngineSlot('speech synthesis'),
  };
  const health = createHealthReporter([Transcription.typeName, Synthesis.typeName]);
  const updateHealth = () => {
    health.setServiceReady(
      Transcription.typeName,
      engines.vad.current() !== undefined && engines.recognizer.current() !== undefined,
    );
    health.setServiceReady(Synthesis.typeName, engines.synthesizer.current() !== undefined);
  };
  for (const slot of [engines.vad, engines.recognizer, engines.synthesizer]) slot.onChange(updateHealth);

  const transport = createGrpcTransport({
    config,
    logger,
    metrics,
    health,
    services: [
      registration(Transcription, createTranscriptionService(engines)),
      registration(Synthesis, createSynthesisService(engines)),
    ],
  });
  let metricsServer: MetricsServer | undefined;

  return {
    config,
    engines,
    health,
    metrics,
    async start() {
      const grpcPort = await transport.listen();
      if (config.monitoring.enabled) {
        metricsServer = await startMetricsServer(metrics.registry, {
          host: config.monitoring.host,
          port: config.monitoring.prometheus_port,
          path: config.monitoring.metrics_endpoint,
        });
      }
      health.markStarted();
      return { grpcPort, metricsPort: metricsServer?.port };
    },
    async stop(graceMs = config.service.drain_grace_seconds * 1000) {
      await transport.drain(graceMs);
      await metricsServer?.close();
    },
  };
}
