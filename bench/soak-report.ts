/** The soak run's report: Markdown on stdout, the goals printed beside the results. */
import type { Sample } from './soak-sampler.js';
import { errorSummary, type Tally } from './soak-tally.js';
import { fmt, percentile, table } from './stt-stats.js';

export interface SoakResult {
  readonly title: string;
  readonly settings: readonly (readonly [string, string])[];
  readonly tally: Tally;
  readonly samples: readonly Sample[];
  /** Seconds into the run when the warm-up ended and when the load stopped. */
  readonly warmupSeconds: number;
  readonly loadSeconds: number;
  /** A sample taken after the load stopped and the server sat idle. */
  readonly idle: Sample | undefined;
  readonly serverExit: string | undefined;
  readonly loadAtStart: readonly number[];
  readonly loadAtEnd: readonly number[];
  readonly notes: readonly string[];
  /** The sentence cache's lookups over the run (voice_tts_cache_requests_total). */
  readonly cache: { readonly hits: number; readonly misses: number } | undefined;
}

/** Least-squares slope of `value` over the samples, per minute. */
export function slopePerMinute(samples: readonly Sample[], value: (sample: Sample) => number): number {
  if (samples.length < 2) return Number.NaN;
  const xs = samples.map((sample) => sample.at / 60);
  const ys = samples.map(value);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  xs.forEach((x, i) => {
    num += (x - mx) * ((ys[i] ?? 0) - my);
    den += (x - mx) ** 2;
  });
  return den === 0 ? Number.NaN : num / den;
}

export interface Growth {
  readonly from: number;
  readonly to: number;
  readonly percent: number;
  /** MiB per minute over the last `slopeMinutes` minutes of load. */
  readonly slope: number;
  readonly slopeMinutes: number;
}

/** From the first sample after warm-up to the last one under load, and the slope at the end. */
export function growth(
  samples: readonly Sample[],
  warmupSeconds: number,
  loadSeconds: number,
  value: (sample: Sample) => number,
): Growth | undefined {
  const loaded = samples.filter((sample) => sample.at >= warmupSeconds && sample.at <= loadSeconds + 1);
  const first = loaded[0];
  const last = loaded.at(-1);
  if (first === undefined || last === undefined) return undefined;
  const slopeMinutes = Math.min(3, Math.max(0.5, (last.at - first.at) / 60 / 2));
  const tail = loaded.filter((sample) => sample.at >= last.at - slopeMinutes * 60);
  return {
    from: value(first),
    to: value(last),
    percent: ((value(last) - value(first)) / value(first)) * 100,
    slope: slopePerMinute(tail, value),
    slopeMinutes,
  };
}

function describeGrowth(g: Growth | undefined): string {
  if (g === undefined) return '–';
  const sign = g.percent >= 0 ? '+' : '';
  return `${fmt(g.from)} → ${fmt(g.to)} MiB (${sign}${fmt(g.percent, 1)} %); slope over the last ${fmt(g.slopeMinutes, 1)} min ${fmt(g.slope, 1)} MiB/min`;
}

/** One row per minute (the sample nearest each whole minute), plus the last one. */
export function minuteRows(samples: readonly Sample[]): string[][] {
  const picked: Sample[] = [];
  const last = samples.at(-1);
  if (last === undefined) return [];
  for (let minute = 0; minute <= Math.floor(last.at / 60); minute += 1) {
    let best: Sample | undefined;
    for (const sample of samples) {
      if (best === undefined || Math.abs(sample.at - minute * 60) < Math.abs(best.at - minute * 60))
        best = sample;
    }
    if (best !== undefined && !picked.includes(best)) picked.push(best);
  }
  if (!picked.includes(last)) picked.push(last);
  return picked.map((s) => [
    fmt(s.at / 60, 1),
    String(s.pid),
    fmt(s.rssMiB),
    fmt(s.heapUsedMiB, 1),
    fmt(s.heapTotalMiB, 1),
    fmt(s.externalMiB, 1),
    fmt(s.arrayBuffersMiB, 1),
    fmt(s.ttsCacheMiB, 1),
    fmt(s.workerHeapMiB, 1),
    fmt(s.workerExternalMiB, 1),
    fmt(s.handles),
    fmt(s.loopP99Ms, 1),
    fmt(s.activeStreams),
    String(s.streams),
    String(s.finals),
    String(s.replies),
    fmt(s.load1, 2),
  ]);
}

export const MINUTE_HEADER = [
  'min',
  'pid',
  'RSS MiB',
  'heap used',
  'heap total',
  'external',
  'array buffers',
  'TTS cache',
  'workers heap',
  'workers external',
  'handles',
  'loop p99 ms',
  'streams open',
  'streams done',
  'finals',
  'replies',
  'load 1 min',
];

export function renderSoak(result: SoakResult): string {
  const { tally, samples } = result;
  const rss = growth(samples, result.warmupSeconds, result.loadSeconds, (s) => s.rssMiB);
  const heap = growth(samples, result.warmupSeconds, result.loadSeconds, (s) => s.heapUsedMiB);
  const rssNet = growth(samples, result.warmupSeconds, result.loadSeconds, (s) => s.rssMiB - s.ttsCacheMiB);
  const cacheFill = growth(samples, result.warmupSeconds, result.loadSeconds, (s) => s.ttsCacheMiB);
  const external = growth(samples, result.warmupSeconds, result.loadSeconds, (s) => s.externalMiB);
  const workerHeap = samples.some((s) => Number.isFinite(s.workerHeapMiB))
    ? growth(samples, result.warmupSeconds, result.loadSeconds, (s) => s.workerHeapMiB)
    : undefined;
  const loops = samples.map((s) => s.loopP99Ms).filter(Number.isFinite);
  const handles = samples.map((s) => s.handles);
  const lines = [
    `## ${result.title}`,
    '',
    table(
      ['setting', 'value'],
      result.settings.map(([key, value]) => [key, value]),
    ),
    '',
    table(
      ['measure', 'result', 'goal'],
      [
        [
          'finals owed / received',
          `${tally.sent} owed, ${tally.sent - tally.lost} received, ${tally.lost} lost (${tally.finals} finals in all, ${tally.unmatched} unmatched, ${tally.duplicates} duplicates)`,
          'no final lost for audio the server received',
        ],
        [
          'utterances cut by a stream end',
          `${tally.cut} (${tally.cutWithFinal} of them still got a final); ${tally.cutReceived} read by the server (${tally.cutReceivedWithFinal} got a final)`,
          '–',
        ],
        [
          'streams',
          `${tally.streams} ran, ${tally.streams - tally.streamsOk} of them failed; ${tally.refused} refused at their start`,
          '–',
        ],
        [
          'replies (SynthesizeText; every third a Synthesize cleared after its first chunk)',
          `${tally.synthOk} of ${tally.synthCalls} complete, ${fmt(tally.synthBytes / 1024 / 1024, 1)} MiB of audio; ${tally.bargeInsAnswered} of ${tally.bargeIns} clears answered`,
          '–',
        ],
        [
          'sentence cache lookups',
          result.cache === undefined
            ? '–'
            : `${fmt(result.cache.hits)} hits, ${fmt(result.cache.misses)} misses (each miss adds a sentence until performance.tts_cache_mb is full)`,
          '–',
        ],
        ['errors', errorSummary(tally.errors), '–'],
        ['server process', result.serverExit ?? 'alive to the end', 'never dies'],
        ['RSS after warm-up → end of load', describeGrowth(rss), 'growth < 5 %'],
        ['RSS less the sentence cache', describeGrowth(rssNet), '–'],
        ['sentence cache (bounded LRU)', describeGrowth(cacheFill), '≤ performance.tts_cache_mb'],
        ['heap used after warm-up → end of load', describeGrowth(heap), '–'],
        ['main thread external memory after warm-up → end', describeGrowth(external), '–'],
        ['worker threads heap after warm-up → end', describeGrowth(workerHeap), '–'],
        [
          'after the load stopped (idle)',
          result.idle === undefined
            ? '–'
            : `RSS ${fmt(result.idle.rssMiB)} MiB, heap used ${fmt(result.idle.heapUsedMiB, 1)} MiB, ${fmt(result.idle.handles)} handles, ${fmt(result.idle.activeStreams)} streams open`,
          '–',
        ],
        [
          'event-loop delay p99 (per sample interval)',
          `median ${fmt(percentile(loops, 50), 1)} ms, worst ${fmt(Math.max(...loops), 1)} ms`,
          '–',
        ],
        ['handles', `${fmt(Math.min(...handles))}–${fmt(Math.max(...handles))}`, '–'],
        [
          'load average (1, 5, 15 min)',
          `start ${result.loadAtStart.map((v) => v.toFixed(2)).join(' ')}, end ${result.loadAtEnd.map((v) => v.toFixed(2)).join(' ')}`,
          '–',
        ],
      ],
    ),
    '',
    '### Every minute',
    '',
    table(MINUTE_HEADER, minuteRows(samples)),
  ];
  if (tally.lostExamples.length > 0)
    lines.push('', `Lost finals (first ${tally.lostExamples.length}): ${tally.lostExamples.join('; ')}`);
  if (result.notes.length > 0) lines.push('', ...result.notes.map((note) => `- ${note}`));
  return lines.join('\n');
}
