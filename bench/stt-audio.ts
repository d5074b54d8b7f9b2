/**
 * The benchmark's audio: espeak-ng sentences at 16 kHz, laid out as streams of utterances separated
 * by silences, with the true end of each utterance's speech on the stream's timeline.
 */
import { concat, RATE, silence, speak, speechBounds } from '../test/helpers/speech.js';

export { toLinear16 } from '../test/helpers/speech.js';

export const SAMPLE_RATE = RATE;

const SENTENCES = [
  'The weather is lovely today.',
  'Please send me the report by Friday.',
  'Could you turn the lights off in the kitchen before you leave?',
  'Our meeting has moved to half past three.',
  'I would like two coffees and a slice of lemon cake, please.',
  'The train to Edinburgh leaves from platform nine.',
  'Remind me to call the dentist tomorrow morning.',
  'Thank you, and see you soon.',
];

const LEAD_SECONDS = 0.5;
const GAP_SECONDS = 1.0;
const TAIL_SECONDS = 1.0;

export interface Sentence {
  readonly index: number;
  readonly samples: Float32Array;
  /** Where the audible speech starts and ends inside `samples`, in samples. */
  readonly speechStart: number;
  readonly speechEnd: number;
}

export interface StreamUtterance {
  readonly sentence: number;
  /** First and last-plus-one sample of audible speech on the stream's timeline. */
  readonly speechStart: number;
  readonly speechEnd: number;
}

export interface StreamAudio {
  readonly samples: Float32Array;
  readonly utterances: readonly StreamUtterance[];
  readonly seconds: number;
}

/** Speaks every sentence once (espeak-ng, resampled to 16 kHz by sox). */
export function speakSentences(): Sentence[] {
  return SENTENCES.map((text, index) => {
    const samples = speak(text);
    const bounds = speechBounds(samples);
    return {
      index,
      samples,
      speechStart: Math.round((bounds.startMs / 1000) * RATE),
      speechEnd: Math.round((bounds.endMs / 1000) * RATE),
    };
  });
}

/**
 * Stream `stream` of a run: `count` sentences, starting at a different sentence per stream so that
 * streams are not in lockstep, each followed by a ~1 s silence.
 */
export function buildStream(sentences: readonly Sentence[], stream: number, count: number): StreamAudio {
  const parts: Float32Array[] = [silence(LEAD_SECONDS)];
  const utterances: StreamUtterance[] = [];
  let offset = parts[0]?.length ?? 0;
  for (let k = 0; k < count; k += 1) {
    const sentence = sentences[(stream * 3 + k) % sentences.length];
    if (sentence === undefined) throw new Error('no sentences');
    utterances.push({
      sentence: sentence.index,
      speechStart: offset + sentence.speechStart,
      speechEnd: offset + sentence.speechEnd,
    });
    const gap = silence(k === count - 1 ? TAIL_SECONDS : GAP_SECONDS);
    parts.push(sentence.samples, gap);
    offset += sentence.samples.length + gap.length;
  }
  const samples = concat(...parts);
  return { samples, utterances, seconds: samples.length / RATE };
}

/** The utterance whose speech overlaps [startMs, endMs] the most, or undefined. */
export function matchUtterance(
  utterances: readonly StreamUtterance[],
  startMs: number,
  endMs: number,
): number | undefined {
  let best: number | undefined;
  let bestOverlap = 0;
  const start = (startMs / 1000) * RATE;
  const end = (endMs / 1000) * RATE;
  utterances.forEach((utterance, index) => {
    const overlap = Math.min(end, utterance.speechEnd) - Math.max(start, utterance.speechStart);
    if (overlap > bestOverlap) {
      bestOverlap = overlap;
      best = index;
    }
  });
  return best;
}
