import type { SpokenPhoneme } from './types.js';
import { type OculusViseme, VISEME_TABLE, type VisemeRow } from './viseme-table.js';

/** A mouth shape over samples of one synthesis, in both viseme sets. */
export interface TimedViseme {
  /** Azure/SAPI id, 0–21. */
  readonly azure: number;
  readonly oculus: OculusViseme;
  /** The phoneme it comes from, as the engine emitted it. */
  readonly phoneme: string;
  readonly startSample: number;
  readonly endSample: number;
}

const BY_SYMBOL = new Map(VISEME_TABLE.map((row) => [row.ipa, row]));
/** Longest first, so `aɪ`, `tʃ` and `ɯᵝ` win over their first letters. */
const SYMBOLS = [...BY_SYMBOL.keys()].sort((a, b) => [...b].length - [...a].length);
const PAUSE = BY_SYMBOL.get('_') as VisemeRow;
/** Stress, length, tie and secondary-articulation marks, and the punctuation eSpeak leaves in ids. */
const MARKS = /[ˈˌːˑ‿ˤˠʰʲʷ.\-ʼ'`#^[":]/gu;
const CEDILLA_GUARD = '\ue000';

/**
 * The table rows of one eSpeak phoneme id: `[]` for a language switch such as `(en)` (no sound),
 * `undefined` when a symbol of it is not in the table. An empty id is a pause.
 */
export function visemeRowsOf(phoneme: string): readonly VisemeRow[] | undefined {
  if (/^\(.*\)$/u.test(phoneme)) return [];
  let rest = phoneme
    .normalize('NFC')
    .replaceAll('ç', CEDILLA_GUARD)
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/gu, '')
    .replaceAll(CEDILLA_GUARD, 'ç')
    .replace(MARKS, '');
  // eSpeak writes aspiration as a trailing h: th, kh, ph, tɕh.
  if (rest.length > 1 && rest.endsWith('h')) rest = rest.slice(0, -1);
  if (rest === '') return [PAUSE];
  const rows: VisemeRow[] = [];
  while (rest !== '') {
    const symbol = SYMBOLS.find((candidate) => rest.startsWith(candidate));
    if (symbol === undefined) return undefined;
    const row = BY_SYMBOL.get(symbol) as VisemeRow;
    // A doubled letter (Italian "ss") is one sound.
    if (rows.at(-1) !== row) rows.push(row);
    rest = rest.slice(symbol.length);
  }
  return rows;
}

/**
 * Visemes for timed phonemes, back to back over samples [0, totalSamples): silence before the first
 * phoneme and after the last. A phoneme of several parts (a diphthong, an affricate the table
 * splits) shares its time equally; a language switch lends its time to the viseme before it; an
 * unknown symbol shows as silence.
 */
export function visemesOf(phonemes: readonly SpokenPhoneme[], totalSamples: number): TimedViseme[] {
  const visemes: TimedViseme[] = [];
  const silence = (startSample: number, endSample: number): TimedViseme => ({
    azure: PAUSE.azure,
    oculus: 'sil',
    phoneme: '',
    startSample,
    endSample,
  });
  const first = phonemes[0]?.startSample ?? totalSamples;
  if (first > 0) visemes.push(silence(0, Math.min(first, totalSamples)));
  for (const phoneme of phonemes) {
    const rows = visemeRowsOf(phoneme.ipa) ?? [PAUSE];
    const parts = rows.flatMap((row) => row.oculus.map((oculus) => ({ oculus, azure: row.azure })));
    const length = phoneme.endSample - phoneme.startSample;
    for (const [index, part] of parts.entries()) {
      const startSample = phoneme.startSample + Math.round((length * index) / parts.length);
      const endSample = phoneme.startSample + Math.round((length * (index + 1)) / parts.length);
      if (endSample > startSample) visemes.push({ ...part, phoneme: phoneme.ipa, startSample, endSample });
    }
  }
  // Back to back: a gap (a language switch, a dropped zero-length part) joins the viseme before it.
  for (let i = 0; i + 1 < visemes.length; i++) {
    const current = visemes[i] as TimedViseme;
    const next = visemes[i + 1] as TimedViseme;
    if (current.endSample !== next.startSample) visemes[i] = { ...current, endSample: next.startSample };
  }
  const end = visemes.at(-1)?.endSample ?? 0;
  if (end < totalSamples) visemes.push(silence(end, totalSamples));
  return visemes.filter((viseme) => viseme.startSample < totalSamples);
}
