/** The chaos run's report: one row per phase with what was lost, then each phase's details. */
import { MINUTE_HEADER, minuteRows } from './soak-report.js';
import type { Sample } from './soak-sampler.js';
import { errorSummary, type Tally } from './soak-tally.js';
import { fmt, table } from './stt-stats.js';

export interface PhaseResult {
  readonly phase: string;
  readonly actions: string;
  readonly details: readonly string[];
  readonly tally: Tally;
  readonly rssStartMiB: number;
  readonly rssPeakMiB: number;
  readonly rssEndMiB: number;
  /** "alive, SERVING (pid 123)" or how it died. */
  readonly server: string;
}

export interface ChaosResult {
  readonly title: string;
  readonly settings: readonly (readonly [string, string])[];
  readonly phases: readonly PhaseResult[];
  readonly samples: readonly Sample[];
  readonly loadAtStart: readonly number[];
  readonly loadAtEnd: readonly number[];
  readonly resume: string;
}

export function renderChaos(result: ChaosResult): string {
  const lines = [
    `## ${result.title}`,
    '',
    table(
      ['setting', 'value'],
      result.settings.map(([key, value]) => [key, value]),
    ),
    '',
    'Goals: the process never dies (the drain phase ends its process on purpose and starts another);',
    'no final lost for audio the server received; RSS bounded while readers stop reading; a reset',
    'connection leaves the other streams unaffected and no stream open on the server.',
    '',
    table(
      [
        'phase',
        'streams (failed)',
        'finals owed',
        'lost',
        'cut: sent (final) / read by the server (final)',
        'errors',
        'RSS start → peak → end MiB',
        'server after',
      ],
      result.phases.map((phase) => {
        const t = phase.tally;
        return [
          phase.phase,
          `${t.streams} (${t.streams - t.streamsOk})${t.refused > 0 ? `, ${t.refused} refused` : ''}`,
          String(t.sent),
          String(t.lost),
          `${t.cut} (${t.cutWithFinal}) / ${t.cutReceived} (${t.cutReceivedWithFinal})`,
          errorSummary(t.errors),
          `${fmt(phase.rssStartMiB)} → ${fmt(phase.rssPeakMiB)} → ${fmt(phase.rssEndMiB)}`,
          phase.server,
        ];
      }),
    ),
    '',
  ];
  for (const phase of result.phases) {
    lines.push(`### ${phase.phase}`, '', `- ${phase.actions}`);
    for (const detail of phase.details) lines.push(`- ${detail}`);
    const t = phase.tally;
    lines.push(
      `- replies: ${t.synthOk} of ${t.synthCalls} complete; finals ${t.finals} (${t.unmatched} unmatched, ${t.duplicates} duplicates)`,
    );
    if (t.lostExamples.length > 0)
      lines.push(`- lost (first ${t.lostExamples.length}): ${t.lostExamples.join('; ')}`);
    lines.push('');
  }
  lines.push(
    `Resume: ${result.resume}`,
    '',
    `Load average (1, 5, 15 min): start ${result.loadAtStart.map((v) => v.toFixed(2)).join(' ')}, end ${result.loadAtEnd.map((v) => v.toFixed(2)).join(' ')}`,
    '',
    '### Every minute',
    '',
    table(MINUTE_HEADER, minuteRows(result.samples)),
  );
  return lines.join('\n');
}
