import type { WordTiming } from '../../server/gen/cortex/voice/v1/synthesis_pb.js';

/** What a listener heard of a synthesis, from the words the chunks carried and the audio played. */
export interface HeardText {
  /** The words whose audio began before the played position, in order. */
  readonly words: readonly WordTiming[];
  /** Code points of the input, from 0 to the end of the last word heard (0 when none was). */
  readonly end: number;
  /** True when the last word heard was played to its end. */
  readonly lastWordComplete: boolean;
}

/**
 * The words heard when playback stopped at `playedSamples` of the call's timeline: those whose audio
 * began before it (a word the listener cut into counts as heard). A word listed on two chunks counts once.
 */
export function heardOf(chunkWords: readonly (readonly WordTiming[])[], playedSamples: number): HeardText {
  // Keyed by text position: two words may start at one sample, but not at one code point.
  const byStart = new Map<number, WordTiming>();
  for (const words of chunkWords) for (const word of words) byStart.set(word.textSpan?.start ?? 0, word);
  const heard = [...byStart.values()]
    .filter((word) => Number(word.startSample) < playedSamples)
    .sort((a, b) => Number(a.startSample - b.startSample));
  const last = heard.at(-1);
  return {
    words: heard,
    end: last?.textSpan?.end ?? 0,
    lastWordComplete: last === undefined || Number(last.endSample) <= playedSamples,
  };
}
