import type { SynthesizeResponse } from '../../server/gen/cortex/voice/v1/synthesis_pb.js';

/**
 * The words and visemes of a synthesis as one JSON document, times in seconds from the start of
 * the audio: what an avatar needs to lip-sync a pre-rendered line. Chunks list a word or viseme
 * that spans two of them on both; it is kept once.
 */
export function createTimingFile() {
  const words = new Map<bigint, SynthesizeResponse['words'][number]>();
  const visemes = new Map<bigint, SynthesizeResponse['visemes'][number]>();
  return {
    add(response: SynthesizeResponse): void {
      for (const word of response.words) words.set(word.startSample, word);
      for (const viseme of response.visemes) visemes.set(viseme.startSample, viseme);
    },
    json(sampleRate: number): string {
      const seconds = (sample: bigint) => Math.round((Number(sample) / sampleRate) * 1e6) / 1e6;
      const ordered = <T extends { startSample: bigint }>(items: Map<bigint, T>) =>
        [...items.values()].sort((a, b) => Number(a.startSample - b.startSample));
      const document = {
        sampleRate,
        words: ordered(words).map((word) => ({
          text: word.text,
          textStart: word.textSpan?.start ?? 0,
          textEnd: word.textSpan?.end ?? 0,
          start: seconds(word.startSample),
          end: seconds(word.endSample),
        })),
        visemes: ordered(visemes).map((viseme) => ({
          azure: viseme.visemeId,
          oculus: viseme.oculusViseme,
          phoneme: viseme.phoneme,
          start: seconds(viseme.startSample),
          end: seconds(viseme.endSample),
        })),
      };
      return `${JSON.stringify(document, null, 2)}\n`;
    },
  };
}
