/** The issue's targets, checked against a report and printed with met / missed; nothing is asserted. */
import { held } from './stt-measure.js';
import {
  largestHeld,
  libraryCpu,
  libraryRate,
  listOf,
  ms,
  type Report,
  serviceCpu,
  serviceRate,
} from './stt-report.js';
import { fmt, percentile } from './stt-stats.js';

const verdict = (ok: boolean) => (ok ? 'met' : 'missed');
const p95 = (values: readonly number[]) => percentile(values, 95);

export function targetLines(report: Report): string[] {
  const lines: string[] = [];
  const bound = report.settings.boundMs;
  const find = (key: string) => report.models.find((result) => result.model.key === key);
  const tiny = find('moonshine-tiny');
  if (tiny !== undefined) {
    const best = largestHeld(tiny.levels, bound)?.admitted ?? 0;
    const lagging = tiny.levels.filter((run) => !held(run, bound));
    lines.push(
      `moonshine-tiny, ${report.settings.workers} workers: ≥ 60 real-time streams held with the final ≤ ${bound} ms (p95) after speech ended: ${best} (${verdict(best >= 60)}).`,
      `moonshine-tiny beyond capacity refuses streams instead of lagging: ${
        lagging.length === 0 ? 'no run lagged' : `lagging at ${listOf(lagging)} streams`
      }; refusals at ${listOf(tiny.levels.filter((run) => run.refused > 0))} (${verdict(lagging.length === 0)}).`,
    );
  }
  const base = find('moonshine-base');
  if (base !== undefined) {
    const run = base.speculative?.on ?? base.levels.find((candidate) => candidate.streams === 1);
    const value = run === undefined ? Number.NaN : p95(run.speechEndedToFinalMs);
    lines.push(
      `moonshine-base, one stream: final within 50 ms (p95) of speech ended: ${ms(value)} ms over ${run?.speechEndedToFinalMs.length ?? 0} finals (${verdict(value <= 50)}).`,
    );
  }
  for (const result of report.models) {
    const ratio = serviceRate(result.capacity) / libraryRate(result.library);
    const goal = result.model.family === 'whisper' ? 1.3 : 1.0;
    lines.push(
      `${result.model.key}: service throughput ${fmt(ratio, 2)}× the library called directly (target ≥ ${fmt(goal, 1)}×${
        goal > 1 ? ' on Whisper' : ''
      }, never below 1.0×: ${verdict(ratio >= goal)}); CPU per audio second ${fmt(serviceCpu(result.capacity) / libraryCpu(result.library), 2)}× the library's.`,
    );
  }
  return lines;
}
