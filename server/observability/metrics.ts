import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds, from a fast unary call to a minute-long stream. */
const LATENCY_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 1800,
];
const INFERENCE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10];

/** The live-transcription capacity estimate as the metrics read it (server/service/capacity.ts). */
export interface CapacityFigures {
  readonly admittedStreams: number;
  readonly loadRatio: number;
  readonly speechRatio: number;
  readonly meanUtteranceSeconds: number;
  readonly models: readonly {
    readonly model: string;
    readonly fixedSeconds: number;
    readonly secondsPerAudioSecond: number;
    readonly expectedFinalDelayMs: number;
    readonly capacityStreams: number;
    readonly availableStreams: number;
  }[];
}

/** A scrape reads every capacity gauge; the estimate is computed once for all of them. */
const CAPACITY_REUSE_MS = 100;

/**
 * The service's metrics, in their own registry. Call metrics use the names of the gRPC ecosystem
 * (go-grpc-prometheus / grpc-ecosystem), so existing dashboards and alerts apply, for calls of every
 * transport: gRPC, gRPC-Web and Connect alike, told apart by the `protocol` label.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // `protocol` says how a call arrived: grpc (the gRPC port), grpc-web or connect (the web port).
  // Dashboards that sum by method or code see every protocol together, as before the label.
  const callLabels = ['grpc_type', 'grpc_service', 'grpc_method', 'protocol'] as const;
  let capacitySource: (() => CapacityFigures) | undefined;
  let ttsCacheBytes: () => number = () => 0;
  let capacityRead: { at: number; figures: CapacityFigures } | undefined;
  const capacity = (): CapacityFigures | undefined => {
    if (capacitySource === undefined) return undefined;
    const at = performance.now();
    if (capacityRead === undefined || at - capacityRead.at > CAPACITY_REUSE_MS) {
      capacityRead = { at, figures: capacitySource() };
    }
    return capacityRead.figures;
  };
  /** A gauge with one series per model, filled from the estimate at each scrape. */
  const perModel = (
    name: string,
    help: string,
    value: (model: CapacityFigures['models'][number]) => number,
  ): Gauge =>
    new Gauge({
      name,
      help,
      labelNames: ['model'],
      registers: [registry],
      collect() {
        this.reset();
        for (const model of capacity()?.models ?? []) this.set({ model: model.model }, value(model));
      },
    });
  const overall = (name: string, help: string, value: (figures: CapacityFigures) => number): Gauge =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const figures = capacity();
        if (figures !== undefined) this.set(value(figures));
      },
    });
  return {
    registry,
    /** Where the capacity gauges read the estimate from at each scrape. */
    observeCapacity(source: () => CapacityFigures): void {
      capacitySource = source;
      capacityRead = undefined;
    },
    /** Where voice_tts_cache_bytes reads the sentence cache's size from at each scrape. */
    observeTtsCache(bytes: () => number): void {
      ttsCacheBytes = bytes;
    },
    started: new Counter({
      name: 'grpc_server_started_total',
      help: 'RPCs started on the server.',
      labelNames: callLabels,
      registers: [registry],
    }),
    handled: new Counter({
      name: 'grpc_server_handled_total',
      help: 'RPCs completed on the server, by status code.',
      labelNames: [...callLabels, 'grpc_code'],
      registers: [registry],
    }),
    handlingSeconds: new Histogram({
      name: 'grpc_server_handling_seconds',
      help: 'Time from the start of an RPC to its status, in seconds.',
      labelNames: callLabels,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    messagesReceived: new Counter({
      name: 'grpc_server_msg_received_total',
      help: 'Messages received from clients.',
      labelNames: callLabels,
      registers: [registry],
    }),
    messagesSent: new Counter({
      name: 'grpc_server_msg_sent_total',
      help: 'Messages sent to clients.',
      labelNames: callLabels,
      registers: [registry],
    }),
    activeStreams: new Gauge({
      name: 'voice_active_streams',
      help: 'Calls in progress, by method.',
      labelNames: ['grpc_service', 'grpc_method'],
      registers: [registry],
    }),
    rejectedCalls: new Counter({
      name: 'voice_rejected_calls_total',
      help: 'Calls refused before reaching a handler (any protocol), by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    // Per API key, labelled with the key's name from the keys file (or the name derived for a key
    // without one; "anonymous" for callers without a key): as many series as configured keys.
    keyRefusals: new Counter({
      name: 'voice_key_refusals_total',
      help: "Calls refused by a caller's limits, by key name and limit (max_concurrent_streams, max_requests_per_minute, max_audio_seconds_per_minute).",
      labelNames: ['key', 'limit'],
      registers: [registry],
    }),
    keyActiveStreams: new Gauge({
      name: 'voice_key_active_streams',
      help: 'Streams open, by key name: what counts against max_concurrent_streams.',
      labelNames: ['key'],
      registers: [registry],
    }),
    keyAudioSeconds: new Counter({
      name: 'voice_key_audio_seconds_total',
      help: 'Seconds of audio received for transcription, by key name: what counts against max_audio_seconds_per_minute.',
      labelNames: ['key'],
      registers: [registry],
    }),
    inferenceSeconds: new Histogram({
      name: 'voice_inference_seconds',
      help: 'Time one model call takes on a worker, in seconds.',
      labelNames: ['kind', 'model'],
      buckets: INFERENCE_BUCKETS,
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'voice_worker_queue_depth',
      help: 'Engine jobs waiting for a worker.',
      registers: [registry],
    }),
    busyWorkers: new Gauge({
      name: 'voice_workers_busy',
      help: 'Model workers running a job.',
      registers: [registry],
    }),
    readyWorkers: new Gauge({
      name: 'voice_workers_ready',
      help: 'Model workers that have loaded their engines and take jobs, by pool.',
      labelNames: ['pool'],
      registers: [registry],
    }),
    loadFailures: new Counter({
      name: 'voice_engine_load_failures_total',
      help: 'Failed loads of a model pool, by pool: a worker that died while loading, or workers that loaded without the engine of a service.',
      labelNames: ['pool'],
      registers: [registry],
    }),
    nextLoadAttempt: new Gauge({
      name: 'voice_engine_next_load_attempt_timestamp_seconds',
      help: 'When a model pool that failed to load tries again (unix time in seconds), by pool; 0 when no attempt is scheduled.',
      labelNames: ['pool'],
      registers: [registry],
    }),
    engineReady: new Gauge({
      name: 'voice_engine_ready',
      help: 'Whether an engine is loaded and serving (1) or not (0): vad, recognizer, synthesizer.',
      labelNames: ['engine'],
      registers: [registry],
    }),
    audioSeconds: new Counter({
      name: 'voice_audio_seconds_total',
      help: 'Seconds of audio received for transcription or produced by synthesis.',
      labelNames: ['direction'],
      registers: [registry],
    }),
    ttsCacheSize: new Gauge({
      name: 'voice_tts_cache_bytes',
      help: 'Bytes of audio held by the synthesized-sentence cache (at most performance.tts_cache_mb).',
      registers: [registry],
      collect() {
        this.set(ttsCacheBytes());
      },
    }),
    ttsInterruptions: new Counter({
      name: 'voice_tts_interruptions_total',
      help: 'Synthesize streams cleared by their client (barge-in), each answered with what was heard.',
      registers: [registry],
    }),
    ttsCache: new Counter({
      name: 'voice_tts_cache_requests_total',
      help: 'Lookups in the synthesized-sentence cache, by result.',
      labelNames: ['result'],
      registers: [registry],
    }),
    admissionRefusals: new Counter({
      name: 'voice_stt_admission_refusals_total',
      help: 'Transcribe streams refused because they would push the expected delay of finals past performance.max_final_delay_ms, by model.',
      labelNames: ['model'],
      registers: [registry],
    }),
    capacityStreams: perModel(
      'voice_stt_capacity_streams',
      'Estimated real-time Transcribe streams of this model alone that the server can hold with finals within performance.max_final_delay_ms.',
      (model) => model.capacityStreams,
    ),
    availableStreams: perModel(
      'voice_stt_available_streams',
      'Estimated Transcribe streams of this model that would still be admitted now, besides the admitted ones.',
      (model) => model.availableStreams,
    ),
    expectedFinalDelay: perModel(
      'voice_stt_expected_final_delay_seconds',
      'Expected delay of a final under the current load, from the end of its utterance: queueing wait plus recognition (M/G/c estimate).',
      (model) => model.expectedFinalDelayMs / 1000,
    ),
    costFixed: perModel(
      'voice_stt_cost_fixed_seconds',
      'Learned compute seconds of one recognition whatever its length.',
      (model) => model.fixedSeconds,
    ),
    costPerAudioSecond: perModel(
      'voice_stt_cost_per_audio_second',
      'Learned compute seconds of a recognition per second of its audio.',
      (model) => model.secondsPerAudioSecond,
    ),
    loadRatio: overall(
      'voice_stt_load_ratio',
      "Estimated utilisation of the inference workers by admitted streams' finals and synthesis; 1 or more: they cannot keep up.",
      (figures) => figures.loadRatio,
    ),
    admittedStreams: overall(
      'voice_stt_admitted_streams',
      'Transcribe streams admitted by capacity and in progress.',
      (figures) => figures.admittedStreams,
    ),
    speechRatio: overall(
      'voice_stt_speech_ratio',
      "Learned share of a stream's audio sent to final recognition.",
      (figures) => figures.speechRatio,
    ),
    meanUtteranceSeconds: overall(
      'voice_stt_mean_utterance_seconds',
      'Learned mean length of an utterance, in seconds.',
      (figures) => figures.meanUtteranceSeconds,
    ),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves the registry on its own HTTP port, apart from gRPC. */
export async function startMetricsServer(
  registry: Registry,
  options: { host: string; port: number; path: string },
): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' || path !== options.path) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (body) => response.writeHead(200, { 'content-type': registry.contentType }).end(body),
      () => response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
