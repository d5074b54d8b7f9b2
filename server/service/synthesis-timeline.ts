import type { MessageInitShape } from '@bufbuild/protobuf';
import type { SynthesizedAudio } from '../engines/types.js';
import { type TimedViseme, visemesOf } from '../engines/visemes.js';
import type { VisemeTimingSchema, WordTimingSchema } from '../gen/cortex/voice/v1/synthesis_pb.js';
import type { TextSegment } from '../pipeline/sentence-split.js';
import { codePointLength } from '../pipeline/text-input.js';

export type WordTimingInit = MessageInitShape<typeof WordTimingSchema>;
export type VisemeTimingInit = MessageInitShape<typeof VisemeTimingSchema>;

/** A word on the call's output timeline; its span counts code points of all text sent. */
interface TimelineWord {
  readonly start: number;
  readonly end: number;
  readonly text: string;
  readonly startSample: number;
  readonly endSample: number;
}

/** What the listener heard of the text since the last restart, given how much audio was played. */
export interface Heard {
  readonly words: WordTimingInit[];
  /** End of the last word heard, in code points of all text sent; undefined when none was. */
  readonly end: number | undefined;
  readonly lastWordComplete: boolean;
}

/**
 * Puts each sentence's word and phoneme timing (samples of the engine's audio, offsets in the
 * sentence) on the call's output timeline (samples at the output rate, code points of all text
 * sent), and hands each chunk the words and visemes that overlap it.
 *
 * Sentences' audio goes through one streaming resampler, whose output is round(input × ratio) long
 * and not shifted, so engine sample s of a sentence lies at base + round((pushed + s) × ratio), where
 * `pushed` counts engine samples sent to the resampler since the last restart.
 */
export function createSynthesisTimeline(outputRate: number) {
  let base = 0;
  let pushed = 0;
  let words: TimelineWord[] = [];
  let visemes: TimedViseme[] = [];
  /** Words since the last restart, kept for `heard` (the lists above are pruned as chunks go out). */
  let sinceRestart: TimelineWord[] = [];
  /** Sentences of a voice without timing (VITS) since the last restart: `heard` counts them whole. */
  let untimed: { end: number; startSample: number; endSample: number }[] = [];

  return {
    /** Registers the audio of `segment`, about to be pushed to the resampler after what came before. */
    add(segment: TextSegment, audio: SynthesizedAudio): void {
      const ratio = outputRate / audio.sampleRate;
      const offset = pushed;
      pushed += audio.samples.length;
      const timing = audio.timing;
      const at = (sample: number) => base + Math.round((offset + sample) * ratio);
      if (timing === undefined) {
        untimed.push({ end: segment.end, startSample: at(0), endSample: at(audio.samples.length) });
        return;
      }
      // A segment's text starts after the whitespace its span begins with, and ends where the span ends.
      const textStart = segment.end - codePointLength(segment.text);
      const codePoint = (utf16: number) => textStart + codePointLength(segment.text.slice(0, utf16));
      const added = timing.words.map((word) => ({
        start: codePoint(word.start),
        end: codePoint(word.end),
        text: segment.text.slice(word.start, word.end),
        startSample: at(word.startSample),
        endSample: at(word.endSample),
      }));
      words.push(...added);
      sinceRestart.push(...added);
      for (const viseme of visemesOf(timing.phonemes, audio.samples.length)) {
        visemes.push({ ...viseme, startSample: at(viseme.startSample), endSample: at(viseme.endSample) });
      }
    },

    /** Words and visemes overlapping output samples [start, end); forgets those ending by `start`. */
    overlapping(start: number, end: number): { words: WordTimingInit[]; visemes: VisemeTimingInit[] } {
      words = words.filter((word) => word.endSample > start);
      visemes = visemes.filter((viseme) => viseme.endSample > start);
      return {
        words: words.filter((word) => word.startSample < end).map(wordTiming),
        visemes: visemes
          .filter((viseme) => viseme.startSample < end)
          .map((viseme) => ({
            visemeId: viseme.azure,
            oculusViseme: viseme.oculus,
            phoneme: viseme.phoneme,
            startSample: BigInt(viseme.startSample),
            endSample: BigInt(viseme.endSample),
          })),
      };
    },

    /**
     * The words whose audio began before output sample `played`, since the last restart; for a
     * voice without timing, the sentences whose audio began.
     */
    heard(played: number): Heard {
      if (untimed.length > 0) {
        const begun = untimed.filter((sentence) => sentence.startSample < played).at(-1);
        return {
          words: [],
          end: begun?.end,
          lastWordComplete: begun === undefined || begun.endSample <= played,
        };
      }
      const heard = sinceRestart.filter((word) => word.startSample < played);
      const last = heard.at(-1);
      return {
        words: heard.map(wordTiming),
        end: last?.end,
        lastWordComplete: last === undefined || last.endSample <= played,
      };
    },

    /** Starts over at output sample `at`, with a new resampler: after a clear. */
    restart(at: number): void {
      base = at;
      pushed = 0;
      words = [];
      visemes = [];
      sinceRestart = [];
      untimed = [];
    },
  };
}

export type SynthesisTimeline = ReturnType<typeof createSynthesisTimeline>;

function wordTiming(word: TimelineWord): WordTimingInit {
  return {
    textSpan: { start: word.start, end: word.end },
    text: word.text,
    startSample: BigInt(word.startSample),
    endSample: BigInt(word.endSample),
  };
}
