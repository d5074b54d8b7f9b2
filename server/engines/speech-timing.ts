import type { EspeakPhonemeEvent, EspeakRun } from './espeak-library.js';
import type { EspeakInput } from './espeak-text.js';
import type { SpeechTiming, SpokenPhoneme, SpokenWord } from './types.js';

/**
 * Word and phoneme timing from eSpeak's events.
 *
 * A word starts at its first sounding phoneme (the WORD event comes ~9 ms before it) and ends with
 * its last sounding phoneme before the next word. eSpeak reports some tokens as several words
 * ("1234" is four words at creeping positions, an emoji two): events whose text overlaps the word
 * before are folded into it, and text eSpeak speaks without an event joins the word before. A word's
 * text is clipped to its token (no trailing space).
 */
export function espeakTiming(run: EspeakRun, input: EspeakInput, text: string): SpeechTiming {
  const total = run.samples.length;
  const phonemes = phonemeSpans(run.phonemes, total);
  const spans: { start: number; end: number; sample: number }[] = [];
  for (const event of [...run.words].sort((a, b) => a.sample - b.sample)) {
    let start = input.sourceOffset(event.position);
    const eventEnd = input.sourceOffset(event.position + Math.max(0, event.length));
    while (start < text.length && isSpace(text, start)) start += 1;
    const end = tokenEnd(text, start, eventEnd);
    const previous = spans.at(-1);
    const sample = Math.min(total, Math.max(0, event.sample));
    if (previous !== undefined && (start < previous.end || end <= start)) {
      previous.end = Math.max(previous.end, end);
      continue;
    }
    if (end <= start) continue;
    spans.push({ start, end, sample });
  }
  // eSpeak speaks some pairs as one word with no event for the second ("of the"): the word it
  // reports then covers both, so no spoken text falls outside every word.
  for (const [index, span] of spans.entries()) {
    const gap = text.slice(span.end, spans[index + 1]?.start ?? text.length);
    const lastSpoken = gap.search(/[\p{L}\p{N}][^\p{L}\p{N}]*$/u);
    if (lastSpoken < 0) continue;
    const code = gap.codePointAt(lastSpoken) ?? 0;
    span.end += lastSpoken + (code > 0xffff ? 2 : 1);
  }
  const words: SpokenWord[] = spans.map((span, index) => {
    const next = spans[index + 1]?.sample ?? total;
    const sounding = phonemes.find(
      (p) => p.ipa !== '' && p.startSample >= span.sample && p.startSample < next,
    );
    const startSample = sounding?.startSample ?? span.sample;
    // Its last sounding phoneme before the next word: a word spoken in parts ("AT&T", "1234") may
    // pause inside, and the pause after a clause is not part of the word.
    let endSample = startSample;
    for (const p of phonemes) {
      if (p.startSample >= next) break;
      if (p.ipa !== '' && p.startSample >= startSample) endSample = p.endSample;
    }
    return { start: span.start, end: span.end, startSample, endSample: Math.min(endSample, next) };
  });
  return { words, phonemes };
}

/** Each phoneme lasts until the next begins; zero-length ones (back-to-back pauses) are dropped. */
function phonemeSpans(events: readonly EspeakPhonemeEvent[], total: number): SpokenPhoneme[] {
  const spans: SpokenPhoneme[] = [];
  for (const [index, event] of events.entries()) {
    const startSample = Math.min(total, Math.max(0, event.sample));
    const endSample = Math.min(total, Math.max(startSample, events[index + 1]?.sample ?? total));
    if (endSample > startSample) spans.push({ ipa: event.ipa, startSample, endSample });
  }
  return spans;
}

/**
 * The end of the token at `start`: no further than `limit` when eSpeak gave a length, else up to the
 * next space without the punctuation that ends a clause ("done." is the word "done").
 */
function tokenEnd(text: string, start: number, limit: number): number {
  const stop = limit > start ? Math.min(limit, text.length) : text.length;
  let end = start;
  while (end < stop && !isSpace(text, end)) end += 1;
  if (limit <= start) while (end > start + 1 && /[.,;:!?]/u.test(text[end - 1] ?? '')) end -= 1;
  return end;
}

function isSpace(text: string, index: number): boolean {
  return /\s/u.test(text[index] ?? '');
}

/** Timing of audio made `factor` times as long (time-stretched or resampled), kept within `total`. */
export function scaleTiming(timing: SpeechTiming, factor: number, total: number): SpeechTiming {
  const at = (sample: number) => Math.min(total, Math.round(sample * factor));
  return {
    words: timing.words.map((w) => ({ ...w, startSample: at(w.startSample), endSample: at(w.endSample) })),
    phonemes: timing.phonemes.map((p) => ({
      ...p,
      startSample: at(p.startSample),
      endSample: at(p.endSample),
    })),
  };
}
