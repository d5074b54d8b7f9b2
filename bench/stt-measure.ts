/**
 * One measured service run: the streams, and around them the server's CPU (from /proc), peak RSS,
 * queue depth and recognition jobs, this bench process's own CPU (it is the load generator, on the
 * same cores) and the CPU other processes on the machine took meanwhile.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { StreamAudio } from './stt-audio.js';
import type { RunningService } from './stt-service.js';
import { cpuSecondsOf, memoryOf, percentile, startLoadMeter } from './stt-stats.js';
import { runStreams, type StreamRunOptions } from './stt-streams.js';

export interface ServiceRun {
  readonly label: string;
  /** Streams offered. */
  readonly streams: number;
  readonly paced: boolean;
  readonly admitted: number;
  readonly refused: number;
  readonly refusedReasons: string[];
  /** Admitted streams cancelled at the run's deadline. */
  readonly deadline: number;
  /** Admitted streams that ended with an error, e.g. "failed RESOURCE_EXHAUSTED". */
  readonly failed: string[];
  /** Utterances in admitted streams, finals received, and utterances without a final. */
  readonly expected: number;
  readonly finals: number;
  readonly lost: number;
  /** Seconds of audio of the admitted streams, silences included. */
  readonly audioSeconds: number;
  /** Seconds of utterance audio (as cut, padding included) of the finals received. */
  readonly utteranceSeconds: number;
  readonly wallSeconds: number;
  /** Final − true end of the spoken sentence, ms. */
  readonly speechEndToFinalMs: number[];
  /** Final − speech-ended event of the same utterance, ms. */
  readonly speechEndedToFinalMs: number[];
  readonly texts: string[];
  readonly recognizeJobs: number;
  readonly recognizeSeconds: number;
  readonly serverCpuSeconds: number;
  readonly clientCpuSeconds: number;
  /** p95 of how late the client sent a chunk after it had been "recorded", ms (paced runs). */
  readonly sendLagP95Ms: number;
  readonly peakRssMiB: number;
  readonly maxQueueDepth: number;
  /** The server's own estimate of how many streams it can hold (voice_stt_capacity_streams), if it exports one. */
  readonly capacityEstimate: number;
  readonly otherLoadCores: number;
  /** How the server process ended during the run, if it did. */
  readonly serverExit: string | undefined;
}

const RECOGNIZE = { kind: 'recognize' };
const CAPACITY = 'voice_stt_capacity_streams';

export async function measureRun(
  service: RunningService,
  audio: readonly StreamAudio[],
  options: StreamRunOptions & { label: string },
): Promise<ServiceRun> {
  await settle(service);
  const before = await service.scrape();
  const cpuBefore = cpuSecondsOf(service.pid);
  const clientBefore = process.cpuUsage();
  const otherLoad = startLoadMeter(() => [process.pid, service.pid]);

  let peakRssMiB = memoryOf(service.pid).rssMiB;
  let maxQueueDepth = 0;
  const rssTimer = setInterval(() => {
    if (service.exited() === undefined) peakRssMiB = Math.max(peakRssMiB, memoryOf(service.pid).rssMiB);
  }, 250);
  const queueTimer = setInterval(() => {
    service.scrape().then(
      (snapshot) => {
        maxQueueDepth = Math.max(maxQueueDepth, snapshot.value('voice_worker_queue_depth'));
      },
      () => {},
    );
  }, 1000);

  let outcome: Awaited<ReturnType<typeof runStreams>>;
  try {
    outcome = await runStreams(service.client, audio, options);
  } finally {
    clearInterval(rssTimer);
    clearInterval(queueTimer);
  }
  const serverExit = service.exited();
  const serverCpuSeconds = serverExit === undefined ? cpuSecondsOf(service.pid) - cpuBefore : Number.NaN;
  const client = process.cpuUsage(clientBefore);
  const otherLoadCores = otherLoad();
  // A server that died during the run leaves its counters unknown.
  const after = await service.scrape().catch(() => undefined);
  const delta = (name: string) =>
    after === undefined ? Number.NaN : after.value(name, RECOGNIZE) - before.value(name, RECOGNIZE);
  const { finals, ends } = outcome;
  const refused = ends.filter((end) => end === 'refused').length;
  return {
    label: options.label,
    streams: audio.length,
    paced: options.paced,
    admitted: audio.length - refused,
    refused,
    refusedReasons: outcome.refusedReasons,
    deadline: ends.filter((end) => end === 'deadline').length,
    failed: ends.filter((end) => end.startsWith('failed')),
    expected: outcome.expected,
    finals: finals.length,
    lost: outcome.lost,
    audioSeconds: outcome.audioSeconds,
    utteranceSeconds: finals.reduce((total, final) => total + (final.endMs - final.startMs) / 1000, 0),
    wallSeconds: outcome.wallSeconds,
    speechEndToFinalMs: finals.map((final) => final.finalAt - final.speechEndAt).filter(Number.isFinite),
    speechEndedToFinalMs: finals.map((final) => final.finalAt - final.speechEndedAt).filter(Number.isFinite),
    texts: [...new Set(finals.map((final) => final.text))],
    recognizeJobs: delta('voice_inference_seconds_count'),
    recognizeSeconds: delta('voice_inference_seconds_sum'),
    serverCpuSeconds,
    clientCpuSeconds: (client.user + client.system) / 1e6,
    sendLagP95Ms: percentile(outcome.sendLagMs, 95),
    peakRssMiB,
    maxQueueDepth,
    capacityEstimate:
      after?.has(CAPACITY) === true ? after.value(CAPACITY, { model: options.model }) : Number.NaN,
    otherLoadCores,
    serverExit,
  };
}

/** Waits (up to 15 s) until the previous run's streams and jobs are gone from the server. */
async function settle(service: RunningService): Promise<void> {
  const until = performance.now() + 15_000;
  while (performance.now() < until && service.exited() === undefined) {
    const snapshot = await service.scrape();
    if (snapshot.value('voice_active_streams') === 0 && snapshot.value('voice_worker_queue_depth') === 0) {
      return;
    }
    await sleep(200);
  }
}

/** Whether a run held its admitted streams: every final, p95 speech-ended → final within the bound. */
export function held(run: ServiceRun, boundMs: number): boolean {
  return (
    run.admitted > 0 &&
    run.lost === 0 &&
    run.failed.length === 0 &&
    run.deadline === 0 &&
    percentile(run.speechEndedToFinalMs, 95) <= boundMs
  );
}
