/**
 * Everything measured for one model: (a) the library on both cores, then (b) the service at each
 * level of concurrent real-time streams (and, in the full form, a search between levels for the
 * largest number held), an unpaced capacity run with admission off, and for moonshine-base the
 * speculative-finals pair.
 */
import { loadavg } from 'node:os';
import { buildStream, type Sentence, type StreamAudio } from './stt-audio.js';
import { type LibraryRun, runLibrary, type Slice } from './stt-direct.js';
import { held, measureRun, type ServiceRun } from './stt-measure.js';
import type { BenchModel } from './stt-models.js';
import type { Plan } from './stt-plan.js';
import {
  benchConfig,
  cleanEnv,
  type RunningService,
  type ServerSettings,
  startService,
} from './stt-service.js';
import { memoryOf } from './stt-stats.js';

export interface Section {
  readonly name: string;
  readonly loadAtStart: number[];
  readonly loadAtEnd: number[];
  readonly seconds: number;
}

export interface ModelResult {
  readonly model: BenchModel;
  readonly library: LibraryRun;
  readonly serverStartSeconds: number;
  readonly idleRssMiB: number;
  /** Real-time runs by number of streams, search runs included. */
  readonly levels: ServiceRun[];
  /** Unpaced, max_final_delay_ms 0: the same utterances as (a), as fast as the server takes them. */
  readonly capacity: ServiceRun;
  readonly speculative: { readonly on: ServiceRun; readonly off: ServiceRun } | undefined;
}

export interface Shared {
  readonly plan: Plan;
  readonly sentences: readonly Sentence[];
  /** The stream (a) was cut from, and the utterances it gave. */
  readonly reference: StreamAudio;
  readonly slices: readonly Slice[];
  readonly sections: Section[];
  readonly log: (line: string) => void;
}

export async function benchModel(model: BenchModel, shared: Shared): Promise<ModelResult> {
  const { plan, sentences, reference, log } = shared;
  const section = <T>(name: string, work: () => Promise<T>) =>
    inSection(shared.sections, `${model.key}: ${name}`, work);
  const utterancePeriodMs = (reference.seconds * 1000) / Math.max(1, reference.utterances.length);

  const library = await section('(a) library', () =>
    runLibrary(model, shared.slices, {
      workers: plan.workers,
      minSeconds: plan.directMinSeconds,
      maxRounds: plan.directMaxRounds,
    }),
  );
  log(
    `${model.key} (a): ${library.calls} calls, ${(library.audioSeconds / library.wallSeconds).toFixed(2)} audio s/s, ` +
      `"${library.text}"`,
  );

  const settings = { cacheDir: model.cacheDir, modelId: model.modelId, workers: plan.workers };
  const realTime = (
    service: RunningService,
    streams: number,
    utterances = plan.utterancesAt(streams),
    label = `${streams} real-time`,
  ) => {
    const audio = Array.from({ length: streams }, (_, index) => buildStream(sentences, index, utterances));
    const longest = Math.max(...audio.map((stream) => stream.seconds));
    return serviceRun(service, audio, {
      label,
      paced: true,
      staggerMs: streams > 1 ? utterancePeriodMs / streams : 0,
      timeoutMs: (longest + utterancePeriodMs / 1000 + plan.graceSeconds) * 1000,
    });
  };
  const serviceRun = async (
    service: RunningService,
    audio: StreamAudio[],
    options: { label: string; paced: boolean; staggerMs: number; timeoutMs: number; chunkSamples?: number },
  ) => {
    const run = await measureRun(service, audio, {
      chunkSamples: plan.chunkSamples,
      ...options,
      model: model.modelId,
      language: 'en',
    });
    log(
      `${model.key} ${run.label}: ${run.admitted}/${run.streams} admitted, ${run.finals}/${run.expected} finals ` +
        `in ${run.wallSeconds.toFixed(1)} s${run.failed.length > 0 ? `, ${run.failed.join(' ')}` : ''}` +
        (run.deadline > 0 ? `, ${run.deadline} cut by the deadline` : '') +
        (run.refused > 0 ? `, refused: ${[...new Set(run.refusedReasons)].join(' ')}` : ''),
    );
    return run;
  };

  // (b) Real-time streams against the default admission.
  let serverStartSeconds = 0;
  let idleRssMiB = 0;
  let speculativeOn: ServiceRun | undefined;
  const levels = await section('(b) real-time', () =>
    withService(settings, log, async (service) => {
      serverStartSeconds = service.startSeconds;
      idleRssMiB = memoryOf(service.pid).rssMiB;
      const runs: ServiceRun[] = [];
      for (const streams of plan.levels) runs.push(await realTime(service, streams));
      if (plan.search) await searchHeld(runs, plan, (streams) => realTime(service, streams));
      // The one-stream run is the speculative-finals pair's "on" half (the server's default).
      if (model.key === 'moonshine-base') speculativeOn = runs.find((run) => run.streams === 1);
      return runs.sort((a, b) => a.streams - b.streams);
    }),
  );

  // Capacity: copies of the reference stream, unpaced, admission off, in chunks of 32 VAD frames
  // (what a file upload would send): every utterance is queued as soon as the VAD has cut it.
  const copies = Math.min(12, Math.max(plan.workers + 1, library.rounds));
  const capacity = await section('(b) capacity', () =>
    withService({ ...settings, maxFinalDelayMs: 0 }, log, (service) =>
      serviceRun(
        service,
        Array.from({ length: copies }, () => reference),
        {
          label: `${copies} unpaced`,
          paced: false,
          staggerMs: 0,
          timeoutMs: 300_000,
          chunkSamples: plan.capacityChunkSamples,
        },
      ),
    ),
  );

  let speculative: ModelResult['speculative'];
  if (speculativeOn !== undefined) {
    const on = speculativeOn;
    const off = await section('speculative finals off', () =>
      withService({ ...settings, speculativeFinals: false }, log, (service) =>
        realTime(service, 1, plan.utterancesAt(1), '1 real-time, speculative off'),
      ),
    );
    speculative = { on, off };
  }
  return { model, library, serverStartSeconds, idleRssMiB, levels, capacity, speculative };
}

/**
 * Bisects between the largest level held and the next level that was not, while they are more
 * than 5 streams apart (at most 3 more runs). A level that refused streams but held the ones it
 * admitted counts as held with its admitted number.
 */
async function searchHeld(
  runs: ServiceRun[],
  plan: Plan,
  run: (streams: number) => Promise<ServiceRun>,
): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const good = runs.filter((candidate) => held(candidate, plan.boundMs));
    const best = Math.max(0, ...good.map((candidate) => candidate.admitted));
    const above = runs
      .filter((candidate) => !held(candidate, plan.boundMs) && candidate.streams > best)
      .map((candidate) => candidate.streams);
    if (best === 0 || above.length === 0) return;
    const next = Math.min(...above);
    if (next - best <= 5) return;
    runs.push(await run(Math.round((best + next) / 2)));
  }
}

async function withService<T>(
  settings: ServerSettings,
  log: (line: string) => void,
  work: (service: RunningService) => Promise<T>,
): Promise<T> {
  const service = await startService(benchConfig(settings), cleanEnv());
  log(
    `server (${settings.workers} workers, max_final_delay_ms ${settings.maxFinalDelayMs ?? 'default'}, ` +
      `speculative finals ${settings.speculativeFinals ?? 'default'}) serving after ${service.startSeconds.toFixed(1)} s`,
  );
  try {
    return await work(service);
  } finally {
    await service.stop();
  }
}

export async function inSection<T>(sections: Section[], name: string, work: () => Promise<T>): Promise<T> {
  const loadAtStart = loadavg().map(round2);
  const started = performance.now();
  try {
    return await work();
  } finally {
    sections.push({
      name,
      loadAtStart,
      loadAtEnd: loadavg().map(round2),
      seconds: (performance.now() - started) / 1000,
    });
  }
}

const round2 = (value: number) => Math.round(value * 100) / 100;
