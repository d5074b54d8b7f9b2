import type { KokoroPhrase } from './kokoro-phonemes.js';
import type { SpeechTiming, SpokenPhoneme, SpokenWord } from './types.js';

/**
 * Kokoro's tokens and their timing. Kokoro reads one token per character of its IPA alphabet (the
 * vocab of tokenizer.json), at most 510 between the two pad tokens, and the timestamped export says
 * how many frames of audio it gave each token. Characters outside the vocab are dropped, as
 * kokoro-js's tokenizer drops them.
 */

/** Most tokens one run of the model reads, the two pad tokens not counted (input_ids ≤ 512). */
export const KOKORO_MAX_TOKENS = 510;

export interface KokoroToken {
  readonly id: number;
  /** Index into the phrase's pieces of the piece the character came from. */
  readonly piece: number;
}

export interface Tokenized {
  readonly tokens: readonly KokoroToken[];
  /** Characters of the phrase that are not in the vocab (each once), dropped. */
  readonly dropped: readonly string[];
}

export function tokenize(phrase: KokoroPhrase, vocab: ReadonlyMap<string, number>): Tokenized {
  const tokens: KokoroToken[] = [];
  const dropped = new Set<string>();
  for (const [piece, { text }] of phrase.pieces.entries()) {
    for (const char of text) {
      const id = vocab.get(char);
      if (id === undefined) dropped.add(char);
      else tokens.push({ id, piece });
    }
  }
  return { tokens, dropped: [...dropped] };
}

/**
 * Cuts `tokens` into runs of at most `max`: after the last clause punctuation that fits, else after
 * the last separator (between words, or between the words eSpeak said for one of the text's), else
 * where it must. A text of at most `max` tokens is one run.
 */
export function splitRuns(
  tokens: readonly KokoroToken[],
  phrase: KokoroPhrase,
  max = KOKORO_MAX_TOKENS,
): KokoroToken[][] {
  if (!(Number.isInteger(max) && max > 0)) throw new RangeError(`max: a positive integer, got ${max}`);
  const runs: KokoroToken[][] = [];
  let start = 0;
  while (tokens.length - start > max) {
    let clause = -1;
    let space = -1;
    for (let end = start + max; end > start; end--) {
      const piece = phrase.pieces[tokens[end - 1]?.piece ?? -1];
      if (piece === undefined || piece.spoken) continue;
      if (/[;:,.!?—…]/u.test(piece.text)) {
        clause = end;
        break;
      }
      if (space < 0) space = end;
    }
    const end =
      clause > start + max / 2 ? clause : space > start ? space : clause > start ? clause : start + max;
    runs.push(tokens.slice(start, end));
    start = end;
  }
  if (start < tokens.length) runs.push(tokens.slice(start));
  return runs;
}

/** The style vector row of a run of `tokens` tokens: `min(tokens, rows - 1)` (kokoro-js's choice). */
export function styleRow(tokens: number, rows: number): number {
  return Math.min(Math.max(tokens, 0), rows - 1);
}

/**
 * Where each token of a run lies in its audio: cumulative durations, in frames, scaled to the
 * waveform's length. The export's frames are 600 samples (25 ms at 24 kHz), so the scale is 600
 * when `samples` = Σ durations × 600; a model whose waveform differs in length is scaled to it.
 * `durations` covers the pad tokens too: one more at each end than `count`.
 * Returns `count + 1` boundaries (start of each token, then the end of the last), in samples.
 */
export function tokenBoundaries(durations: ArrayLike<number>, count: number, samples: number): number[] {
  if (durations.length !== count + 2) {
    throw new RangeError(`durations: ${durations.length} values for ${count + 2} tokens`);
  }
  let total = 0;
  for (let i = 0; i < durations.length; i++) total += Math.max(0, durations[i] ?? 0);
  const scale = total > 0 ? samples / total : 0;
  const bounds: number[] = [];
  let cumulative = Math.max(0, durations[0] ?? 0);
  for (let i = 0; i <= count; i++) {
    bounds.push(Math.min(samples, Math.round(cumulative * scale)));
    cumulative += Math.max(0, durations[i + 1] ?? 0);
  }
  return bounds;
}

/** A run's tokens and their boundaries, placed `offset` samples into the whole audio. */
export interface TimedRun {
  readonly tokens: readonly KokoroToken[];
  readonly bounds: readonly number[];
  readonly offset: number;
  readonly samples: number;
}

/**
 * The timing of the whole audio: a phoneme per piece spoken (its tokens' span), a pause ('') for
 * separators and for the audio of the pad tokens around each run; a word from its first phoneme's
 * start to its last one's end.
 */
export function kokoroTiming(phrase: KokoroPhrase, runs: readonly TimedRun[]): SpeechTiming {
  const phonemes: SpokenPhoneme[] = [];
  const spans = new Map<number, { start: number; end: number }>();
  const add = (ipa: string, startSample: number, endSample: number, piece: number | undefined) => {
    if (endSample <= startSample) return;
    const last = phonemes.at(-1);
    if (last !== undefined && last.ipa === ipa && (ipa === '' || piece === lastPiece)) {
      phonemes[phonemes.length - 1] = { ipa, startSample: last.startSample, endSample };
    } else {
      phonemes.push({ ipa, startSample, endSample });
    }
    lastPiece = piece;
  };
  let lastPiece: number | undefined;
  for (const run of runs) {
    const first = run.offset + (run.bounds[0] ?? 0);
    add('', run.offset, first, undefined);
    for (const [index, token] of run.tokens.entries()) {
      const start = run.offset + (run.bounds[index] ?? 0);
      const end = run.offset + (run.bounds[index + 1] ?? 0);
      const piece = phrase.pieces[token.piece];
      if (piece === undefined) continue;
      add(piece.spoken ? piece.text : '', start, end, token.piece);
      if (piece.spoken && piece.word !== undefined && end > start) {
        const span = spans.get(piece.word);
        spans.set(piece.word, { start: span?.start ?? start, end });
      }
    }
    add('', run.offset + (run.bounds.at(-1) ?? 0), run.offset + run.samples, undefined);
  }
  const words: SpokenWord[] = [];
  for (const [index, word] of phrase.words.entries()) {
    const span = spans.get(index);
    if (span !== undefined) {
      words.push({ start: word.start, end: word.end, startSample: span.start, endSample: span.end });
    }
  }
  return { words, phonemes };
}
