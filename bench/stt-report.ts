/** The speech-to-text benchmark's results and their rendering as Markdown tables. */
import type { CallBreakdown, DirectRun } from './stt-direct.js';
import { type ServiceRun, spread } from './stt-measure.js';
import { fmt, mean, percentile, table } from './stt-stats.js';

export interface DirectResult extends DirectRun {
  readonly label: string;
  readonly threads: number;
  readonly concurrency: number;
}

export interface ServiceResult {
  readonly threads: number;
  readonly workers: number;
  readonly startSeconds: number;
  readonly idleRssMiB: number;
  readonly runs: ServiceRun[];
}

export interface Report {
  readonly machine: {
    readonly cores: number;
    readonly cpu: string;
    readonly node: string;
    readonly date: string;
    readonly loadAtStart: number[];
    readonly loadAtEnd: number[];
    readonly command: string;
    readonly benchSeconds: number;
  };
  readonly model: {
    readonly id: string;
    readonly preset: string;
    readonly text: string;
    readonly genSeconds: number;
  };
  readonly settings: {
    readonly chunkMs: number;
    readonly vadModel: string;
    readonly minSilenceMs: number;
    readonly speechPadMs: number;
    /** performance.request_queue_size of the server under test. */
    readonly requestQueueSize: number;
    readonly quick: boolean;
  };
  /** The in-process VAD over the reference stream. */
  readonly vad: {
    readonly audioSeconds: number;
    readonly seconds: number;
    readonly cpuSeconds: number;
    readonly calls: number;
    readonly utterances: number;
    readonly utteranceSeconds: number;
  };
  readonly breakdown: CallBreakdown[];
  readonly direct: DirectResult[];
  readonly directRssMiB: number;
  readonly services: ServiceResult[];
  /** The busiest real-time run against a small recognition queue. */
  readonly overload: { readonly queueSize: number; readonly run: ServiceRun } | undefined;
}

const ms = (value: number) => fmt(value, 0);
const pair = (values: readonly number[]) => {
  const { p50, p95 } = spread(values);
  return `${ms(p50)} / ${ms(p95)}`;
};
const triple = (values: readonly number[]) => {
  const { p50, p95, max } = spread(values);
  return `${ms(p50)} / ${ms(p95)} / ${ms(max)}`;
};

/** Audio seconds of recognized utterances per wall second. */
const directRtf = (run: DirectRun) => run.audioSeconds / run.wallSeconds;
const serviceUtteranceRtf = (run: ServiceRun) => run.utteranceSeconds / run.wallSeconds;

export function renderReport(report: Report): string {
  const { machine, settings } = report;
  const out: string[] = [];
  out.push(
    `Machine: ${machine.cores} cores (${machine.cpu}), Node ${machine.node}, ${machine.date}; ` +
      `load average ${machine.loadAtStart.join(' ')} at start, ${machine.loadAtEnd.join(' ')} at end; ` +
      `bench took ${fmt(machine.benchSeconds, 0)} s.`,
    `Model: ${report.model.id} (whisper-${report.model.preset} dimensions, random weights, fp32; always says ` +
      `"${report.model.text}"), generated in ${fmt(report.model.genSeconds, 1)} s.`,
    `Audio: espeak-ng sentences at 16 kHz, ~1 s silences, LINEAR16 in ${settings.chunkMs} ms chunks; ` +
      `${settings.vadModel}, min silence ${settings.minSilenceMs} ms, speech pad ${settings.speechPadMs} ms.`,
    '',
    '## Where one direct call goes (1 intra-op thread)',
    '',
  );
  const rows = report.breakdown.map((call) => [
    ms(call.featuresMs),
    ms(call.encoderMs),
    `${ms(call.decoderMs)} (${call.decoderSteps} × ${ms(call.decoderMs / Math.max(1, call.decoderSteps))})`,
    ms(call.totalMs - call.encoderMs - call.decoderMs - call.featuresMs),
    ms(call.totalMs),
  ]);
  const avg = (pick: (call: CallBreakdown) => number) => mean(report.breakdown.map(pick));
  rows.push([
    `**${ms(avg((c) => c.featuresMs))}**`,
    `**${ms(avg((c) => c.encoderMs))}**`,
    `**${ms(avg((c) => c.decoderMs))}**`,
    `**${ms(avg((c) => c.totalMs - c.encoderMs - c.decoderMs - c.featuresMs))}**`,
    `**${ms(avg((c) => c.totalMs))}**`,
  ]);
  out.push(
    table(['log-mel features (JS) ms', 'encoder ms', 'decoder ms (steps × ms)', 'other ms', 'call ms'], rows),
    '',
    'Last row: mean. Features: the feature extractor (log-mel spectrogram of the padded 30 s window, ' +
      'JavaScript on the calling thread); encoder and decoder: their onnxruntime session runs; other: ' +
      'the rest of the call (prompt, generation loop, tensor copies, detokenising).',
    '',
    '## (a) The library in one process',
    '',
    table(
      [
        'config',
        'calls',
        'audio s',
        'wall s',
        'RTF',
        'calls/s',
        'CPU s / call',
        'latency p50 / p95 ms',
        'other load cores',
      ],
      report.direct.map((run) => [
        run.label,
        String(run.calls),
        fmt(run.audioSeconds, 1),
        fmt(run.wallSeconds, 1),
        fmt(directRtf(run), 2),
        fmt(run.calls / run.wallSeconds, 2),
        fmt(run.cpuSeconds / run.calls, 2),
        pair(run.latenciesMs),
        fmt(run.otherLoadCores, 2),
      ]),
    ),
    '',
    `RTF: seconds of utterance audio (${report.vad.utterances} utterances cut by the VAD, ` +
      `${fmt(report.vad.utteranceSeconds, 1)} s) recognized per wall second. CPU: this process's CPU time, ` +
      'every thread. In-process VAD and segmenter over the ' +
      `${fmt(report.vad.audioSeconds, 1)} s stream: ${fmt((report.vad.cpuSeconds / report.vad.audioSeconds) * 100, 2)} % ` +
      `of a core per real-time stream in CPU time (${fmt((report.vad.seconds / report.vad.audioSeconds) * 100, 2)} % ` +
      `in wall time of ${report.vad.calls} VAD calls). RSS of this process with ` +
      'two recognizers loaded: ' +
      `${fmt(report.directRssMiB, 0)} MiB.`,
    '',
    `## (b) The service over gRPC (${report.services[0]?.workers ?? 2} inference workers)`,
    '',
    table(
      [
        'threads/worker',
        'streams',
        'audio s',
        'wall s',
        'RTF',
        'finals',
        'errors',
        'end of speech → final p50 / p95 / max ms',
        'endpointing p50 / p95 ms',
        'cut → final p50 / p95 ms',
        'service overhead p50 / p95 ms',
      ],
      allRuns(report).map((run) => [
        String(run.threads),
        run.label,
        fmt(run.audioSeconds, 1),
        fmt(run.wallSeconds, 1),
        fmt(run.audioSeconds / run.wallSeconds, 2),
        `${run.finals.length}/${run.expected}`,
        errorCell(run),
        run.paced ? triple(run.latencyMs) : '–',
        run.paced ? pair(run.endpointingMs) : '–',
        pair(run.afterEndMs),
        run.overheadMs.length > 0 ? pair(run.overheadMs) : '–',
      ]),
    ),
    '',
    'RTF: seconds of stream audio (silences included) per wall second, from the first chunk until ' +
      'the last stream ended; a real-time run that keeps up approaches its stream count. End of speech: ' +
      'when the chunk holding the last audible sample was sent, plus the min silence. Endpointing: end ' +
      'of speech → speech-ended event (VAD frames and batches, the speech probability trailing the ' +
      'audible end). Cut → final: speech-ended → final result (queueing, recognition, transport). ' +
      "Service overhead: cut → final minus that job's in-worker recognition time " +
      '(voice_inference_seconds), single stream only. Errors: status of streams that did not end OK ' +
      '(Canceled: the run deadline passed).',
    '',
    '### Resources',
    '',
    table(
      [
        'threads/worker',
        'streams',
        'VAD in worker % core / stream',
        'server CPU % core / stream',
        'recognize jobs',
        'recognize mean s',
        'server CPU s / utterance',
        'server CPU cores',
        'peak RSS MiB',
        'max queue (at s)',
        'other load cores',
      ],
      allRuns(report).map((run) => [
        String(run.threads),
        run.label,
        fmt((run.vadCoreSeconds / run.audioSeconds) * 100, 2),
        fmt((run.serverCpuSeconds / run.audioSeconds) * 100, 1),
        fmt(run.recognizeJobs, 0),
        fmt(run.recognizeSeconds / run.recognizeJobs, 2),
        run.finals.length > 0 ? fmt(run.serverCpuSeconds / run.finals.length, 2) : '–',
        fmt(run.serverCpuSeconds / run.wallSeconds, 2),
        fmt(run.peakRssMiB, 0),
        `${run.maxQueueDepth} (${fmt(run.maxQueueAtSeconds, 0)})`,
        run.serverExit === undefined ? fmt(run.otherLoadCores, 2) : '–',
      ]),
    ),
    '',
    `Server RSS after loading (one process; the workers are threads): ${report.services
      .map((service) => `${fmt(service.idleRssMiB, 0)} MiB with ${service.threads} thread(s)/worker`)
      .join(', ')}. VAD in worker: voice_inference_seconds{kind="vad"} (wall time inside the VAD ` +
      'worker) per second of stream audio. Server CPU: CPU time of the whole server process (main ' +
      'thread, VAD worker, inference workers) per second of stream audio; the no-speech run is the ' +
      'cost of a stream that never reaches the recognizer (decode, VAD, segmenter, gRPC). Recognize ' +
      'mean: in-worker time per recognition job. Other load: cores kept busy by processes other than ' +
      'the bench and the server during the run.',
    '',
    '## Summary against the targets',
    '',
    ...summary(report),
  );
  return out.join('\n');
}

function allRuns(report: Report): ServiceRun[] {
  const runs = report.services.flatMap((service) => service.runs);
  return report.overload === undefined ? runs : [...runs, report.overload.run];
}

function errorCell(run: ServiceRun): string {
  const parts = run.serverExit === undefined ? [] : [`server ended: ${run.serverExit}`];
  if (run.errors.length > 0) parts.push(countNames(run.errors));
  return parts.length === 0 ? '0' : parts.join('; ');
}

function countNames(names: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1);
  return [...counts].map(([name, count]) => `${count} ${name}`).join(', ');
}

function summary(report: Report): string[] {
  const lines: string[] = [];
  const best = report.direct.reduce<DirectResult | undefined>(
    (top, run) => (top === undefined || directRtf(run) > directRtf(top) ? run : top),
    undefined,
  );
  const directVadCpuPerUtterance = report.vad.cpuSeconds / Math.max(1, report.vad.utterances);
  for (const service of report.services) {
    const shape = `${service.workers} workers × ${service.threads} thread(s)`;
    const single = service.runs.find((run) => run.streams === 1 && run.paced);
    const noise = service.runs.find((run) => run.label.includes('no speech'));
    const unpaced = service.runs.find((run) => !run.paced && run.expected > 0);
    const sequential = report.direct.find((run) => run.threads === service.threads && run.concurrency === 1);
    if (single !== undefined) {
      const overhead = percentile(single.overheadMs, 95);
      lines.push(
        `- ${shape}, 1 real-time stream: service overhead p95 ${ms(overhead)} ms (target ≤ 20 ms: ` +
          `${overhead <= 20 ? 'met' : 'missed'})` +
          (sequential === undefined
            ? '.'
            : `; cut → final p50 ${ms(percentile(single.afterEndMs, 50))} ms against a direct call's p50 ` +
              `${ms(percentile(sequential.latenciesMs, 50))} ms.`),
      );
    }
    if (noise !== undefined) {
      const vad = (noise.vadCoreSeconds / noise.audioSeconds) * 100;
      const cpu = (noise.serverCpuSeconds / noise.audioSeconds) * 100;
      lines.push(
        `- ${shape}: VAD ${fmt(vad, 2)} % of a core per real-time stream in the VAD worker (target ≤ 1 %: ` +
          `${vad <= 1 ? 'met' : 'missed'}); the whole streaming path without recognition costs ${fmt(cpu, 2)} % ` +
          `of a core per stream in server CPU time; in-process VAD + segmenter ${fmt((report.vad.cpuSeconds / report.vad.audioSeconds) * 100, 2)} %.`,
      );
    }
    if (unpaced !== undefined && best !== undefined) {
      const ratio = serviceUtteranceRtf(unpaced) / directRtf(best);
      let line =
        `- ${shape}, capacity (unpaced): ${fmt(serviceUtteranceRtf(unpaced), 2)}× real time of utterance audio ` +
        `(${fmt(unpaced.finals.length / unpaced.wallSeconds, 2)} utterances/s) = ${fmt(ratio * 100, 0)} % of the ` +
        `best direct run on the same cores (${best.label}, ${fmt(directRtf(best), 2)}×; target ≥ 95 %: ` +
        `${ratio >= 0.95 ? 'met' : 'missed'})`;
      if (sequential !== undefined && unpaced.finals.length > 0) {
        const directCpu = sequential.cpuSeconds / sequential.calls + directVadCpuPerUtterance;
        const serviceCpu = unpaced.serverCpuSeconds / unpaced.finals.length;
        line +=
          `. CPU per utterance: direct ${fmt(directCpu, 2)} s (VAD included), service ${fmt(serviceCpu, 2)} s: ` +
          `the service does ${fmt((directCpu / serviceCpu) * 100, 0)} % of the direct work per CPU second`;
      }
      lines.push(`${line}.`);
      const busiest = service.runs.filter((run) => run.paced).at(-1);
      if (busiest !== undefined && busiest.streams > 1) lines.push(overload(busiest, unpaced, shape, report));
    }
  }
  return lines;
}

/** What the busiest real-time run offered against the measured capacity, and where that leads. */
function overload(run: ServiceRun, capacityRun: ServiceRun, shape: string, report: Report): string {
  const streamSeconds = run.audioSeconds / run.streams;
  const offered = run.expected / streamSeconds;
  const capacity = capacityRun.finals.length / capacityRun.wallSeconds;
  const head =
    `- ${shape}, ${run.streams} real-time streams offer ${fmt(offered, 2)} utterances/s against a capacity ` +
    `of ${fmt(capacity, 2)}/s`;
  if (offered <= capacity) return `${head}: it keeps up.`;
  const growth = offered - capacity;
  return (
    `${head}: the recognition queue grows by about ${fmt(growth, 1)} jobs/s (deepest seen ` +
    `${run.maxQueueDepth}) and every final waits longer (p95 ${ms(percentile(run.latencyMs, 95))} ms after the ` +
    `end of speech). Sustained, the queue (performance.request_queue_size = ${report.settings.requestQueueSize}) ` +
    `would be full after about ${fmt(report.settings.requestQueueSize / growth, 0)} s.` +
    (report.overload === undefined ? '' : ` ${overloadOutcome(report.overload)}`)
  );
}

function overloadOutcome({ queueSize, run }: { queueSize: number; run: ServiceRun }): string {
  const ended =
    run.serverExit === undefined ? 'the server kept running' : `the server process ended (${run.serverExit})`;
  const errors =
    run.errors.length === 0 ? 'no stream failed' : `streams ended with ${countNames(run.errors)}`;
  return (
    `The same load with request_queue_size = ${queueSize}: ${run.finals.length}/${run.expected} finals, ` +
    `${errors}, ${ended}.`
  );
}
