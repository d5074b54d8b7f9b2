import type { EspeakLibrary } from './espeak-library.js';
import { toEspeakInput } from './espeak-text.js';
import type { KokoroLanguage } from './kokoro-voices.js';
import { espeakTiming } from './speech-timing.js';

/**
 * Text → what Kokoro reads: IPA phonemes, word by word, with the text's punctuation between words.
 *
 * eSpeak NG speaks the text (its audio is thrown away: ~3–5 ms CPU per audio second) and its events
 * give each word's place in the text and its phonemes in IPA. Words are those of `espeakTiming`
 * (a number eSpeak says as several words is one word of the text); inside such a word the words
 * eSpeak said are kept apart by a space, as eSpeak's own phoneme output does ("wˈʌn θˈaʊzənd").
 * Between words goes what Kokoro was trained with: the text's punctuation (it has tokens of its own,
 * and gives Kokoro its pauses and question intonation) and a space; kokoro-js does the same.
 */

/** One piece of what Kokoro reads: a phoneme of a word, or a separator (space, punctuation). */
export interface KokoroPiece {
  /** IPA of a phoneme, after kokoro-js's fixes; the characters of a separator. */
  readonly text: string;
  /** Index into `KokoroPhrase.words` of the word it belongs to; undefined between words. */
  readonly word: number | undefined;
  /** True for a phoneme; false for a separator, which is spoken as a pause. */
  readonly spoken: boolean;
}

export interface KokoroPhrase {
  /** UTF-16 offsets of each word in the text, end exclusive. */
  readonly words: readonly { readonly start: number; readonly end: number }[];
  readonly pieces: readonly KokoroPiece[];
}

/** Punctuation Kokoro has tokens for and kokoro-js keeps between phonemised runs. */
const KEPT_PUNCTUATION = new Set([';', ':', ',', '.', '!', '?', '—', '…', '"', '(', ')', '“', '”']);
/** eSpeak's language-switch marks inside a phoneme, e.g. `(en)` in a French text. */
const LANGUAGE_SWITCH = /\([a-z]{2,3}(?:-[a-z0-9]+)?\)/g;

/** A phoneme from eSpeak's events as Kokoro was trained on it (the fixes kokoro-js makes). */
export function kokoroIpa(ipa: string, language: KokoroLanguage): string {
  const bare = ipa.replace(LANGUAGE_SWITCH, '');
  if (!language.english) return bare;
  return bare.replaceAll('ʲ', 'j').replaceAll('r', 'ɹ').replaceAll('x', 'k').replaceAll('ɬ', 'l');
}

/** What goes between two words (or before the first, after the last) for the text between them. */
export function separatorOf(between: string, inner: boolean): string {
  let out = '';
  for (const char of between) {
    if (KEPT_PUNCTUATION.has(char)) out += char;
    else if (/\s/u.test(char) && !out.endsWith(' ')) out += ' ';
  }
  if (!inner) return out.trim();
  return out === '' ? ' ' : out;
}

/**
 * Phonemises `text` with eSpeak voice `language.espeakVoice`. `shouldStop` is polled every 100 ms
 * of eSpeak's audio; a stopped run returns what it had.
 */
export function phonemize(
  library: EspeakLibrary,
  text: string,
  language: KokoroLanguage,
  shouldStop: () => boolean,
): KokoroPhrase {
  const input = toEspeakInput(text);
  const run = library.speak(input.input, { voice: language.espeakVoice, wordsPerMinute: 175, shouldStop });
  const timing = espeakTiming(run, input, text);
  const words = timing.words.map(({ start, end }) => ({ start, end }));
  const raw = [...run.words].sort((a, b) => a.sample - b.sample);
  const groups: { word: number; subWord: number; ipa: string }[] = [];
  let wordIndex = 0;
  let rawIndex = -1;
  for (const event of run.phonemes) {
    if (event.ipa === '') continue;
    while ((timing.words[wordIndex + 1]?.startSample ?? Number.POSITIVE_INFINITY) <= event.sample) {
      wordIndex += 1;
    }
    while ((raw[rawIndex + 1]?.sample ?? Number.POSITIVE_INFINITY) <= event.sample) rawIndex += 1;
    const ipa = kokoroIpa(event.ipa, language);
    if (ipa !== '' && words.length > 0) groups.push({ word: wordIndex, subWord: rawIndex, ipa });
  }
  if (language.american) flapNinety(groups);

  const pieces: KokoroPiece[] = [];
  const separator = (from: number, to: number, inner: boolean) => {
    const value = separatorOf(text.slice(from, to), inner);
    if (value !== '') pieces.push({ text: value, word: undefined, spoken: false });
  };
  separator(0, words[0]?.start ?? 0, false);
  for (const [index, group] of groups.entries()) {
    const previous = groups[index - 1];
    if (previous !== undefined && previous.word !== group.word) {
      separator(words[previous.word]?.end ?? 0, words[group.word]?.start ?? 0, true);
    } else if (previous !== undefined && previous.subWord !== group.subWord) {
      pieces.push({ text: ' ', word: group.word, spoken: false });
    }
    pieces.push({ text: group.ipa, word: group.word, spoken: true });
  }
  const last = groups.at(-1);
  separator(last === undefined ? 0 : (words[last.word]?.end ?? 0), text.length, false);
  return { words, pieces };
}

/** kokoro-js's American fix: `nˈaɪnti` ("ninety") → `nˈaɪndi`, i.e. `t` after `nˈaɪn` becomes `d`. */
function flapNinety(groups: { word: number; ipa: string }[]): void {
  for (let i = 3; i < groups.length - 1; i++) {
    const group = groups[i];
    const next = groups[i + 1];
    if (group?.ipa !== 't' || next?.ipa !== 'i' || next.word !== group.word) continue;
    const before = groups.slice(i - 3, i);
    if (before.every((g) => g.word === group.word) && before.map((g) => g.ipa).join('') === 'nˈaɪn') {
      group.ipa = 'd';
    }
  }
}
