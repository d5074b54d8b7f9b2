/**
 * Speech-to-text benchmark: the library's pipeline called directly (a) against the service end to end
 * over gRPC (b), on one generated Whisper model with whisper-base's dimensions (random weights, so
 * true compute cost and a fixed 9-token output), espeak-ng speech and this machine's cores.
 *
 *   node dist/bench/stt.js [--quick] [--threads 1,2] [--chunk-ms 40] [--json results.json]
 *
 * It prints figures; it asserts nothing. About 3–4 minutes on an idle 2-core machine (--quick: about
 * 1.5); every service run has a deadline, so a slow machine cannot stretch it much further.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ENV_OVERRIDES, loadConfig } from '../server/config.js';
import { resolveSegmenterConfig } from '../server/pipeline/utterance-segmenter.js';
import { generateWhisperModel } from '../test/fixtures/whisper-model.js';
import { buildStream, noiseStream, SAMPLE_RATE, type StreamAudio, speakSentences } from './stt-audio.js';
import { breakdownCalls, loadRecognizer, type ModelRef, runDirect, segmentStream } from './stt-direct.js';
import { measureRun, type ServiceRun } from './stt-measure.js';
import { type DirectResult, type Report, renderReport, type ServiceResult } from './stt-report.js';
import { type RunningService, startService } from './stt-service.js';
import { memoryOf } from './stt-stats.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    threads: { type: 'string' },
    'chunk-ms': { type: 'string', default: '40' },
    json: { type: 'string' },
  },
});
const quick = args.quick === true;
const chunkMs = Number(args['chunk-ms']);
if (!Number.isInteger(chunkMs) || chunkMs < 20 || chunkMs > 100) {
  throw new RangeError(`--chunk-ms: an integer from 20 to 100, got ${args['chunk-ms']}`);
}
const threadOptions = (args.threads ?? (quick ? '1' : '1,2')).split(',').map(Number);
if (threadOptions.some((threads) => !Number.isInteger(threads) || threads < 1 || threads > 8)) {
  throw new RangeError(`--threads: a list of integers from 1 to 8, got ${args.threads}`);
}
const chunkSamples = (chunkMs * SAMPLE_RATE) / 1000;
const WORKERS = 2;
/** Real-time runs: streams, utterances per stream, and the deadline after which they are cancelled. */
const realTimeRuns = quick
  ? [
      { streams: 1, utterances: 3, deadlineMs: 60_000 },
      { streams: 4, utterances: 2, deadlineMs: 60_000 },
      { streams: 16, utterances: 1, deadlineMs: 45_000 },
    ]
  : [
      { streams: 1, utterances: 6, deadlineMs: 90_000 },
      { streams: 4, utterances: 4, deadlineMs: 90_000 },
      { streams: 16, utterances: 2, deadlineMs: 75_000 },
    ];
/** Stream starts are spread over about one utterance period so that utterance ends interleave. */
const UTTERANCE_PERIOD_MS = 3200;
const NOISE = { streams: 4, seconds: quick ? 15 : 30 };
const log = (line: string) => process.stderr.write(`[bench:stt] ${line}\n`);

const defaults = loadConfig({ env: {} });
const vadSettings = defaults.models.vad;
const segmenter = resolveSegmenterConfig({
  threshold: vadSettings.threshold,
  minSpeechMs: vadSettings.min_speech_ms,
  minSilenceMs: vadSettings.min_silence_ms,
  speechPadMs: vadSettings.speech_pad_ms,
});
const vadVersion = vadSettings.model === 'silero_v6' ? 'v6' : 'v5';

const scratch = mkdtempSync(join(tmpdir(), 'voice-bench-stt-'));
const benchStarted = performance.now();
try {
  const report = await run();
  process.stdout.write(`${renderReport(report)}\n`);
  if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

async function run(): Promise<Report> {
  const loadAtStart = loadavg();
  const started = performance.now();
  const generated = await generateWhisperModel({ root: scratch, preset: 'base' });
  const model: ModelRef = { cacheDir: scratch, modelId: generated.modelId };
  const genSeconds = (performance.now() - started) / 1000;
  log(`generated ${generated.modelId} in ${genSeconds.toFixed(1)} s`);
  const sentences = speakSentences();
  const reference = buildStream(sentences, 0, realTimeRuns[0]?.utterances ?? 3);

  // (a) The library in this process.
  const segmentation = await segmentStream(reference, { version: vadVersion, segmenter, chunkSamples });
  const { slices } = segmentation;
  log(`VAD cut ${slices.length} utterances from ${reference.seconds.toFixed(1)} s of audio`);
  const breakdown = await breakdownCalls(model, slices.slice(0, quick ? 2 : 3), 1);
  log('timed features, encoder and decoder');
  const direct: DirectResult[] = [];
  const one = await loadRecognizer(model, 1);
  const sequential = await runDirect(one, slices, { concurrency: 1, rounds: 1 });
  direct.push({ label: '1 thread, sequential', threads: 1, concurrency: 1, ...sequential });
  const concurrent = await runDirect(one, slices, { concurrency: 2, rounds: 1 });
  direct.push({ label: '1 thread, 2 concurrent calls', threads: 1, concurrency: 2, ...concurrent });
  // Both cores for one call: the in-process counterpart of the service's two workers.
  const two = await loadRecognizer(model, 2);
  const both = await runDirect(two, slices, { concurrency: 1, rounds: 1 });
  direct.push({ label: '2 threads, sequential', threads: 2, concurrency: 1, ...both });
  log('direct runs done');

  // (b) The service over gRPC.
  const services: ServiceResult[] = [];
  for (const threads of threadOptions) {
    const service = await startService(serviceSections(model, threads), cleanEnv());
    log(
      `server (${WORKERS} workers × ${threads} threads) serving after ${service.startSeconds.toFixed(1)} s`,
    );
    const idleRssMiB = memoryOf(service.pid).rssMiB;
    const runs: ServiceRun[] = [];
    try {
      // The first thread setting gets every run; the others the single stream and capacity only.
      const first = threads === threadOptions[0];
      for (const plan of first ? realTimeRuns : realTimeRuns.slice(0, 1)) {
        const audio = Array.from({ length: plan.streams }, (_, index) =>
          buildStream(sentences, index, plan.utterances),
        );
        const label = `${plan.streams} real-time`;
        runs.push(await serviceRun(service, audio, label, threads, true, plan.deadlineMs));
      }
      if (first) {
        const noise = Array.from({ length: NOISE.streams }, (_, index) =>
          noiseStream(NOISE.seconds, index + 1),
        );
        runs.push(
          await serviceRun(service, noise, `${NOISE.streams} unpaced, no speech`, threads, false, 60_000),
        );
      }
      // Capacity: two copies of the reference stream as fast as the server takes them, so every
      // utterance is queued at once and both workers stay busy on the same utterances as (a).
      runs.push(await serviceRun(service, [reference, reference], '2 unpaced', threads, false, 120_000));
    } finally {
      await service.stop();
    }
    services.push({ threads, workers: WORKERS, startSeconds: service.startSeconds, idleRssMiB, runs });
  }

  // Overload: the busiest real-time run against a queue small enough to fill within the run. The
  // queue still holds one VAD job per stream, so only recognition jobs can overflow it.
  const busiest = realTimeRuns.at(-1);
  const threads = threadOptions[0] ?? 1;
  let overload: Report['overload'];
  if (busiest !== undefined) {
    const queueSize = busiest.streams;
    const service = await startService(serviceSections(model, threads, queueSize), cleanEnv());
    try {
      const audio = Array.from({ length: busiest.streams }, (_, index) =>
        buildStream(sentences, index, busiest.utterances),
      );
      const label = `${busiest.streams} real-time, queue ${queueSize}`;
      const run = await serviceRun(service, audio, label, threads, true, busiest.deadlineMs);
      overload = { queueSize, run };
    } finally {
      await service.stop();
    }
  }

  return {
    machine: {
      cores: availableParallelism(),
      cpu: cpus()[0]?.model ?? 'unknown',
      node: process.version,
      date: new Date().toISOString(),
      loadAtStart: loadAtStart.map((value) => Number(value.toFixed(2))),
      loadAtEnd: loadavg().map((value) => Number(value.toFixed(2))),
      command: `node dist/bench/stt.js ${process.argv.slice(2).join(' ')}`.trim(),
      benchSeconds: (performance.now() - benchStarted) / 1000,
    },
    model: { id: generated.modelId, preset: 'base', text: generated.text, genSeconds },
    settings: {
      chunkMs,
      vadModel: `silero-vad-${vadVersion}`,
      minSilenceMs: segmenter.minSilenceMs,
      speechPadMs: segmenter.speechPadMs,
      requestQueueSize: defaults.performance.request_queue_size,
      quick,
    },
    vad: {
      audioSeconds: reference.seconds,
      seconds: segmentation.vadSeconds,
      cpuSeconds: segmentation.cpuSeconds,
      calls: segmentation.vadCalls,
      utterances: slices.length,
      utteranceSeconds: slices.reduce((total, slice) => total + slice.audio.length / SAMPLE_RATE, 0),
    },
    breakdown,
    direct,
    directRssMiB: process.memoryUsage().rss / 1024 / 1024,
    services,
    overload,
  };
}

async function serviceRun(
  service: RunningService,
  audio: StreamAudio[],
  label: string,
  threads: number,
  paced: boolean,
  deadlineMs: number,
): Promise<ServiceRun> {
  const result = await measureRun(service, audio, {
    label,
    threads,
    chunkSamples,
    paced,
    staggerMs: paced && audio.length > 1 ? UTTERANCE_PERIOD_MS / audio.length : 0,
    minSilenceMs: segmenter.minSilenceMs,
    timeoutMs: deadlineMs,
  });
  log(
    `${label}: ${result.finals.length}/${result.expected} finals in ${result.wallSeconds.toFixed(1)} s` +
      (result.errors.length > 0
        ? `, ${result.errors.length} stream(s) ended with ${result.errors.join(' ')}`
        : ''),
  );
  return result;
}

function serviceSections(
  model: ModelRef,
  threads: number,
  queueSize = defaults.performance.request_queue_size,
): Record<string, unknown> {
  return {
    service: { host: '127.0.0.1', port: 0, drain_grace_seconds: 2 },
    models: { cache_dir: model.cacheDir, stt: { model: model.modelId, dtype: 'fp32', language: 'en' } },
    performance: { workers: WORKERS, inference_threads: threads, request_queue_size: queueSize },
    logging: { level: 'info', format: 'json', output: 'stdout' },
    monitoring: { host: '127.0.0.1', prometheus_port: 0 },
    // Every stream comes from one client address; the per-client limits are not what is measured.
    security: { rate_limit: { enabled: false } },
  };
}

/** This process's environment without the variables that would override the server's config. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const { variable } of ENV_OVERRIDES) delete env[variable];
  delete env.VOICE_CONFIG;
  return env;
}
