import type { MessageInitShape } from '@bufbuild/protobuf';
import type { InterruptionSchema, SynthesizeResponseSchema } from '../gen/cortex/voice/v1/synthesis_pb.js';
import type { Channel } from '../pipeline/channel.js';
import { codePointLength } from '../pipeline/text-input.js';
import type { Heard } from './synthesis-timeline.js';

type ResponseInit = MessageInitShape<typeof SynthesizeResponseSchema>;
type InterruptionInit = MessageInitShape<typeof InterruptionSchema>;

/**
 * Takes back the audio chunks queued for the writer and not yet taken: they will never be sent.
 * An earlier clear's answer still queued stays, with what came before it. Returns where the first
 * chunk taken back stood, which is where numbering and the timeline go on; undefined if none was.
 */
export function takeBackUnsent(
  out: Channel<ResponseInit>,
): { readonly sequenceNumber: number; readonly sampleOffset: number } | undefined {
  const unsent = out.takeQueued();
  const kept = unsent.findLastIndex((response) => response.interruption !== undefined) + 1;
  for (const response of unsent.slice(0, kept)) out.push(response);
  const first = unsent[kept];
  if (first === undefined) return undefined;
  return { sequenceNumber: first.sequenceNumber ?? 0, sampleOffset: Number(first.sampleOffset ?? 0) };
}

export interface InterruptionFacts {
  /** Samples of audio sent, and of those the client said it played (at most the sent ones). */
  readonly sentSamples: number;
  readonly playedSamples: number;
  /** What the timeline says was heard since the last clear. */
  readonly heard: Heard;
  /** The code point the text since the last clear starts at, and that text. */
  readonly clearedAt: number;
  readonly textSinceClear: string;
  /** Code points of all text received. */
  readonly receivedChars: number;
}

/** The answer to a Clear: the text heard runs from the last clear to the end of the last word heard. */
export function interruptionOf(facts: InterruptionFacts): InterruptionInit {
  const heardEnd = facts.heard.end ?? facts.clearedAt;
  const heardText = [...facts.textSinceClear].slice(0, heardEnd - facts.clearedAt).join('');
  const trimmed = heardText.trimStart();
  return {
    sentSamples: BigInt(facts.sentSamples),
    playedSamples: BigInt(facts.playedSamples),
    heardSpan: {
      start: facts.clearedAt + codePointLength(heardText.slice(0, heardText.length - trimmed.length)),
      end: heardEnd,
    },
    heardText: trimmed,
    heardWords: facts.heard.words,
    lastWordComplete: facts.heard.lastWordComplete,
    unheardChars: facts.receivedChars - heardEnd,
  };
}
