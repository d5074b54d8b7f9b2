/** The speech-to-text benchmark's results, and their rendering as Markdown tables with the targets. */
import type { LibraryRun } from './stt-direct.js';
import { held, type ServiceRun } from './stt-measure.js';
import type { ModelResult, Section } from './stt-model-bench.js';
import { fmt, mean, percentile, table } from './stt-stats.js';
import { targetLines } from './stt-targets.js';

export interface Report {
  readonly machine: {
    readonly cores: number;
    readonly cpu: string;
    readonly memoryGiB: number;
    readonly node: string;
    readonly onnxruntime: string;
    readonly transformers: string;
    readonly date: string;
    readonly loadAtStart: number[];
    readonly loadAtEnd: number[];
    readonly command: string;
    readonly benchSeconds: number;
  };
  readonly settings: {
    readonly quick: boolean;
    readonly workers: number;
    readonly chunkMs: number;
    readonly vadModel: string;
    readonly minSilenceMs: number;
    readonly speechPadMs: number;
    readonly maxFinalDelayMs: number;
    readonly boundMs: number;
  };
  /** The reference stream (a) and the capacity runs use, and its cut by the in-process VAD. */
  readonly reference: {
    readonly seconds: number;
    readonly utterances: number;
    readonly utteranceSeconds: number;
    readonly vadCpuSeconds: number;
  };
  readonly sections: Section[];
  readonly models: ModelResult[];
}

export const ms = (value: number) => fmt(value, 0);
const pair = (values: readonly number[]) => `${ms(percentile(values, 50))} / ${ms(percentile(values, 95))}`;
export const libraryRate = (run: LibraryRun) => run.audioSeconds / run.wallSeconds;
export const libraryCpu = (run: LibraryRun) => run.cpuSeconds / run.audioSeconds;
export const serviceRate = (run: ServiceRun) => run.utteranceSeconds / run.wallSeconds;
export const serviceCpu = (run: ServiceRun) => run.serverCpuSeconds / run.utteranceSeconds;

export function renderReport(report: Report): string {
  const { machine, settings, reference, models } = report;
  const vadCpu = reference.vadCpuSeconds / reference.utteranceSeconds;
  const out: string[] = [];
  out.push(
    `Machine: ${machine.cores} cores (${machine.cpu}), ${fmt(machine.memoryGiB)} GiB, Node ${machine.node}, ` +
      `onnxruntime-node ${machine.onnxruntime}, @huggingface/transformers ${machine.transformers}; ${machine.date}; ` +
      `load average ${machine.loadAtStart.join(' ')} at start, ${machine.loadAtEnd.join(' ')} at end; ` +
      `bench took ${fmt(machine.benchSeconds)} s (${settings.quick ? '--quick' : 'full form'}).`,
    `Command: \`${machine.command}\`.`,
    `Audio: espeak-ng sentences at 16 kHz with ~1 s silences, LINEAR16 in ${settings.chunkMs} ms chunks; ` +
      `${settings.vadModel}, min silence ${settings.minSilenceMs} ms, speech pad ${settings.speechPadMs} ms. ` +
      `Reference stream for (a) and capacity: ${fmt(reference.seconds, 1)} s, cut into ${reference.utterances} ` +
      `utterances (${fmt(reference.utteranceSeconds, 1)} s); the VAD and segmenter took ` +
      `${fmt((100 * reference.vadCpuSeconds) / reference.seconds, 2)} % of a core per second of it in this process.`,
    `Service: ${settings.workers} inference workers × 1 thread, performance.max_final_delay_ms ` +
      `${settings.maxFinalDelayMs} (default) for real-time runs, 0 for capacity runs.`,
  );

  out.push(
    '',
    '### Models',
    '',
    table(
      ['model', 'id', 'dimensions', 'says', 'server start s', 'server idle RSS MiB'],
      models.map(({ model, serverStartSeconds, idleRssMiB }) => [
        model.key,
        model.modelId,
        `${model.dims}${model.realDims ? '' : ' (NOT the real dimensions)'}`,
        `"${model.text}"`,
        fmt(serverStartSeconds, 1),
        fmt(idleRssMiB),
      ]),
    ),
  );
  const fake = models.filter((result) => !result.model.realDims);
  if (fake.length > 0) {
    out.push(
      '',
      `**Warning:** ${fake.map((result) => result.model.key).join(', ')} did not come out at the real ` +
        "dimensions (has the fixtures' preset rename to 'minimal' | 'tiny' | 'base' landed?); their figures are not that model's.",
    );
  }

  out.push(
    '',
    `### (a) The library's pipeline called directly, ${settings.workers} worker threads × 1 onnxruntime thread`,
    '',
    table(
      [
        'model',
        'calls (rounds)',
        'audio s',
        'wall s',
        'audio s / s',
        'CPU s / audio s',
        'call p50 / p95 ms',
        'RSS MiB',
        'other load cores',
      ],
      models.map(({ model, library }) => [
        model.key,
        `${library.calls} (${library.rounds})`,
        fmt(library.audioSeconds, 1),
        fmt(library.wallSeconds, 1),
        fmt(libraryRate(library), 2),
        fmt(libraryCpu(library), 3),
        pair(library.latenciesMs),
        fmt(library.rssMiB),
        fmt(library.otherLoadCores, 2),
      ]),
    ),
    '',
    'Audio: seconds of utterance audio (as the VAD cut it, padding included) recognised; CPU: this process, every thread. ' +
      'The VAD ran before, so (a) excludes it; the service pays its own VAD in the figures below.',
  );

  out.push(
    '',
    '### Capacity: the service unpaced (max_final_delay_ms 0) against (a), same utterances',
    '',
    table(
      [
        'model',
        'streams',
        'finals',
        'wall s',
        'service audio s / s',
        'library audio s / s',
        'throughput ratio',
        'service CPU s / audio s',
        'library CPU s / audio s',
        'CPU ratio',
        'library + VAD CPU s / audio s',
        'in-worker / library call ms',
        'other load cores',
      ],
      models.map(({ model, library, capacity }) => [
        model.key,
        String(capacity.streams),
        `${capacity.finals}/${capacity.expected}`,
        fmt(capacity.wallSeconds, 1),
        fmt(serviceRate(capacity), 2),
        fmt(libraryRate(library), 2),
        `${fmt(serviceRate(capacity) / libraryRate(library), 2)}×`,
        fmt(serviceCpu(capacity), 3),
        fmt(libraryCpu(library), 3),
        `${fmt(serviceCpu(capacity) / libraryCpu(library), 2)}×`,
        fmt(libraryCpu(library) + vadCpu, 3),
        `${ms((1000 * capacity.recognizeSeconds) / capacity.recognizeJobs)} / ${ms(mean(library.latenciesMs))}`,
        fmt(capacity.otherLoadCores, 2),
      ]),
    ),
    '',
    'Service: copies of the reference stream sent as fast as the server takes them, in 1024 ms chunks; audio s / s is utterance audio of the finals ' +
      'per wall second from the first chunk to the last final; CPU is the whole server process (/proc), VAD over the silences included. ' +
      'Library + VAD: (a) plus what the in-process VAD and segmenter cost per second of utterance audio of the same stream. ' +
      "The ratios compare against (a) without it. In-worker: mean time of a recognition job inside the server's worker " +
      '(voice_inference_seconds) against the mean call of (a).',
  );

  out.push(
    '',
    '### (b) Concurrent real-time streams',
    '',
    realTimeTable(
      models.flatMap((result) => result.levels.map((run) => [result.model.key, run.label, run] as const)),
    ),
  );
  out.push(
    '',
    `End of speech: the true end of the spoken sentence on the stream's timeline (from the generated audio), so it includes the ` +
      `${settings.minSilenceMs} ms min silence. Speech ended: the speechEnded event of the same utterance. Lost: utterances of admitted ` +
      'streams whose final never came (cut: streams cancelled at the run deadline). CPU per second of admitted stream audio, silences ' +
      'included. Client: this bench process, the load generator, on the same cores; its send lag is how late a chunk left after it ' +
      'had been "recorded" (a late client shows up as latency, since end of speech is taken from the ideal timeline).',
  );

  out.push(
    '',
    `### Largest number of streams held (final ≤ ${settings.boundMs} ms p95 after speech ended, no final lost)`,
    '',
    table(
      [
        'model',
        'held',
        'at run',
        'runs refusing streams',
        'runs lagging (p95 over the bound or finals lost)',
        "server's own estimate (streams)",
      ],
      models.map((result) => {
        const best = largestHeld(result.levels, settings.boundMs);
        return [
          result.model.key,
          best === undefined ? '0' : String(best.admitted),
          best === undefined ? '–' : best.label,
          listOf(result.levels.filter((run) => run.refused > 0)),
          listOf(result.levels.filter((run) => !held(run, settings.boundMs))),
          fmt(result.levels.at(-1)?.capacityEstimate ?? Number.NaN, 1),
        ];
      }),
    ),
  );

  out.push(
    '',
    "The server's own estimate: voice_stt_capacity_streams after the busiest run (– when the server does not export it).",
  );

  const withPair = models.filter((result) => result.speculative !== undefined);
  for (const { model, speculative } of withPair) {
    if (speculative === undefined) continue;
    out.push(
      '',
      `### Speculative finals, ${model.key}, one real-time stream`,
      '',
      realTimeTable([
        [model.key, 'on (default)', speculative.on],
        [model.key, 'off', speculative.off],
      ]),
    );
    const saved = (pick: (run: ServiceRun) => number[], p: number) =>
      percentile(pick(speculative.off), p) - percentile(pick(speculative.on), p);
    out.push(
      '',
      `Saving with speculative finals: speech ended → final ${ms(saved((run) => run.speechEndedToFinalMs, 50))} ms p50 / ` +
        `${ms(saved((run) => run.speechEndedToFinalMs, 95))} ms p95; end of speech → final ${ms(saved((run) => run.speechEndToFinalMs, 50))} / ` +
        `${ms(saved((run) => run.speechEndToFinalMs, 95))} ms. Recognition jobs: ${fmt(speculative.on.recognizeJobs)} on, ` +
        `${fmt(speculative.off.recognizeJobs)} off (a speculation dropped because speech resumed costs a job).`,
    );
  }

  out.push(
    '',
    '### Load during each section',
    '',
    table(
      ['section', 'load average at start', 'at end', 'seconds'],
      report.sections.map((section) => [
        section.name,
        section.loadAtStart.join(' '),
        section.loadAtEnd.join(' '),
        fmt(section.seconds),
      ]),
    ),
  );

  out.push('', '### Targets (printed, not asserted)', '', ...targetLines(report).map((line) => `- ${line}`));
  return out.join('\n');
}

function realTimeTable(rows: ReadonlyArray<readonly [string, string, ServiceRun]>): string {
  return table(
    [
      'model',
      'run',
      'admitted',
      'refused',
      'finals',
      'lost',
      'end of speech → final p50 / p95 ms',
      'speech ended → final p50 / p95 ms',
      'server CPU s / audio s',
      'peak RSS MiB',
      'max queue',
      'client cores',
      'client send lag p95 ms',
      'other load cores',
    ],
    rows.map(([key, label, run]) => [
      key,
      label,
      String(run.admitted),
      String(run.refused),
      `${run.finals}/${run.expected}`,
      `${run.lost}${run.deadline > 0 ? ` (${run.deadline} cut)` : ''}${run.failed.length > 0 ? ` (${run.failed.join(', ')})` : ''}`,
      pair(run.speechEndToFinalMs),
      pair(run.speechEndedToFinalMs),
      fmt(run.serverCpuSeconds / run.audioSeconds, 3),
      fmt(run.peakRssMiB),
      fmt(run.maxQueueDepth),
      fmt(run.clientCpuSeconds / run.wallSeconds, 2),
      ms(run.sendLagP95Ms),
      fmt(run.otherLoadCores, 2),
    ]),
  );
}

export function largestHeld(runs: readonly ServiceRun[], boundMs: number): ServiceRun | undefined {
  return runs
    .filter((run) => held(run, boundMs))
    .reduce<ServiceRun | undefined>(
      (best, run) => (best === undefined || run.admitted > best.admitted ? run : best),
      undefined,
    );
}

export const listOf = (runs: readonly ServiceRun[]) =>
  runs.length === 0 ? 'none' : runs.map((run) => run.streams).join(', ');
