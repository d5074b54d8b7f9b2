/**
 * One measured service run: the streams, and around them the server's metrics, CPU, memory and
 * queue depth, and the CPU other processes on the machine took meanwhile.
 */

import type { StreamAudio } from './stt-audio.js';
import type { RunningService } from './stt-service.js';
import { cpuSecondsOf, memoryOf, percentile, startLoadMeter } from './stt-stats.js';
import { type FinalRecord, runStreams, type StreamRunOptions } from './stt-streams.js';

export interface ServiceRun {
  readonly label: string;
  readonly streams: number;
  readonly paced: boolean;
  readonly threads: number;
  readonly audioSeconds: number;
  readonly wallSeconds: number;
  readonly expected: number;
  readonly finals: FinalRecord[];
  readonly missed: number;
  readonly errors: string[];
  /** Final result − (last speech sample sent + min silence), ms. */
  readonly latencyMs: number[];
  /** Speech-ended event − (last speech sample sent + min silence), ms: the VAD's endpointing. */
  readonly endpointingMs: number[];
  /** Final − speech-ended, ms: queueing, recognition and transport after the utterance was cut. */
  readonly afterEndMs: number[];
  /** Final − speech-ended − that job's in-worker recognition time, ms (single-stream runs only). */
  readonly overheadMs: number[];
  /** Seconds of speech audio in the utterances recognized. */
  readonly utteranceSeconds: number;
  readonly vadCoreSeconds: number;
  readonly vadJobs: number;
  readonly recognizeSeconds: number;
  readonly recognizeJobs: number;
  readonly serverCpuSeconds: number;
  readonly peakRssMiB: number;
  readonly maxQueueDepth: number;
  /** Seconds after the first chunk when the queue was deepest. */
  readonly maxQueueAtSeconds: number;
  /** Cores kept busy by other processes during the run. */
  readonly otherLoadCores: number;
  /** How the server process ended during the run, if it did. */
  readonly serverExit: string | undefined;
}

const RECOGNIZE = { kind: 'recognize' };
const VAD = { kind: 'vad' };

export async function measureRun(
  service: RunningService,
  audio: readonly StreamAudio[],
  options: Omit<StreamRunOptions, 'onFinal'> & { label: string; threads: number },
): Promise<ServiceRun> {
  const before = await service.scrape();
  const cpuBefore = cpuSecondsOf(service.pid);
  const otherLoad = startLoadMeter(() => [process.pid, service.pid]);
  const started = performance.now();

  let peakRssMiB = memoryOf(service.pid).rssMiB;
  let maxQueueDepth = 0;
  let maxQueueAtSeconds = 0;
  const rssTimer = setInterval(() => {
    if (service.exited() === undefined) peakRssMiB = Math.max(peakRssMiB, memoryOf(service.pid).rssMiB);
  }, 250);
  const queueTimer = setInterval(() => {
    service.scrape().then(
      (snapshot) => {
        const depth = snapshot.value('voice_worker_queue_depth');
        if (depth > maxQueueDepth) {
          maxQueueDepth = depth;
          maxQueueAtSeconds = (performance.now() - started) / 1000;
        }
      },
      () => {},
    );
  }, 1000);

  // With one stream, each final's in-worker recognition time is the growth of the metric's sum.
  const overheadMs: number[] = [];
  let lastSum = before.value('voice_inference_seconds_sum', RECOGNIZE);
  let lastCount = before.value('voice_inference_seconds_count', RECOGNIZE);
  let pairing: Promise<void> = Promise.resolve();
  const onFinal =
    audio.length === 1
      ? (final: FinalRecord) => {
          pairing = pairing.then(async () => {
            const now = await service.scrape();
            const sum = now.value('voice_inference_seconds_sum', RECOGNIZE);
            const count = now.value('voice_inference_seconds_count', RECOGNIZE);
            if (count - lastCount === 1) {
              overheadMs.push(final.finalAt - final.speechEndedAt - (sum - lastSum) * 1000);
            }
            lastSum = sum;
            lastCount = count;
          });
        }
      : undefined;

  let outcome: Awaited<ReturnType<typeof runStreams>>;
  try {
    outcome = await runStreams(service.client, audio, { ...options, ...(onFinal ? { onFinal } : {}) });
    await pairing;
  } finally {
    clearInterval(rssTimer);
    clearInterval(queueTimer);
  }
  // A server that died during the run leaves its counters unknown.
  const after = await service.scrape().catch(() => undefined);
  const serverExit = service.exited();
  const delta = (name: string, labels: Record<string, string>) =>
    after === undefined ? Number.NaN : after.value(name, labels) - before.value(name, labels);
  const finals = outcome.finals;
  return {
    label: options.label,
    streams: audio.length,
    paced: options.paced,
    threads: options.threads,
    audioSeconds: outcome.audioSeconds,
    wallSeconds: outcome.wallSeconds,
    expected: audio.reduce((total, stream) => total + stream.utterances.length, 0),
    finals,
    missed: outcome.missed,
    errors: outcome.errors,
    latencyMs: finals.map((final) => final.finalAt - final.endOfSpeechAt).filter(Number.isFinite),
    endpointingMs: finals.map((final) => final.speechEndedAt - final.endOfSpeechAt).filter(Number.isFinite),
    afterEndMs: finals.map((final) => final.finalAt - final.speechEndedAt).filter(Number.isFinite),
    overheadMs,
    utteranceSeconds: finals.reduce((total, final) => total + (final.endMs - final.startMs) / 1000, 0),
    vadCoreSeconds: delta('voice_inference_seconds_sum', VAD),
    vadJobs: delta('voice_inference_seconds_count', VAD),
    recognizeSeconds: delta('voice_inference_seconds_sum', RECOGNIZE),
    recognizeJobs: delta('voice_inference_seconds_count', RECOGNIZE),
    serverCpuSeconds: serverExit === undefined ? cpuSecondsOf(service.pid) - cpuBefore : Number.NaN,
    peakRssMiB,
    maxQueueDepth,
    maxQueueAtSeconds,
    otherLoadCores: otherLoad(),
    serverExit,
  };
}

/** p50 / p95 / max of a list, for one table cell. */
export function spread(values: readonly number[]): { p50: number; p95: number; max: number } {
  return { p50: percentile(values, 50), p95: percentile(values, 95), max: percentile(values, 100) };
}
