import type { MessageInitShape } from '@bufbuild/protobuf';
import type { TranscribeResponse, TranscriptionConfigSchema } from '../../clients/node/index.js';
import { concat, silence, speak } from './speech.js';

export type ConfigInit = MessageInitShape<typeof TranscriptionConfigSchema>;
export type RequestInit = {
  request: { case: 'config'; value: ConfigInit } | { case: 'audio'; value: Uint8Array };
};

/** eSpeak speech with pauses, and a long silence that commits by interval: ~17 s at 16 kHz. */
export function speechWithPauses(): Float32Array {
  return concat(
    silence(0.7),
    speak('The weather is lovely today.'),
    silence(1.2),
    speak('Please send me the report by Friday.'),
    silence(0.4),
    speak('We can talk it over.'),
    silence(6.5),
    speak('Thank you, and see you soon.'),
    silence(1),
  );
}

/** Requests: the config, then `audio` in chunks of `chunkBytes`. */
export async function* requestsOf(
  config: ConfigInit,
  audio: Uint8Array,
  chunkBytes = 3200,
): AsyncGenerator<RequestInit> {
  yield { request: { case: 'config', value: config } };
  for (let offset = 0; offset < audio.length; offset += chunkBytes) {
    yield { request: { case: 'audio', value: audio.subarray(offset, offset + chunkBytes) } };
  }
}

export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

/**
 * The events that must be the same in a resumed run, one line each: the speech events in order,
 * then the finals in order (a final may come before or after later speech events, by timing).
 */
export function lines(responses: readonly TranscribeResponse[], fromUtterance = 0): string[] {
  const all = responses.flatMap((response) => {
    const event = response.event;
    switch (event.case) {
      case 'speechStarted':
      case 'speechEnded':
        return event.value.utteranceIndex >= fromUtterance
          ? [`${event.case} #${event.value.utteranceIndex} @${event.value.offsetMs}`]
          : [];
      case 'result':
        return event.value.isFinal && event.value.utteranceIndex >= fromUtterance
          ? [
              `final #${event.value.utteranceIndex} ${event.value.startMs}-${event.value.endMs} "${event.value.text}"`,
            ]
          : [];
      default:
        return [];
    }
  });
  return [
    ...all.filter((line) => !line.startsWith('final')),
    ...all.filter((line) => line.startsWith('final')),
  ];
}

export interface Commit {
  readonly offsetMs: number;
  readonly nextUtteranceIndex: number;
  /** Its place among the responses. */
  readonly at: number;
}

export function commitsOf(responses: readonly TranscribeResponse[]): Commit[] {
  return responses.flatMap((response, at) =>
    response.event.case === 'audioCommitted'
      ? [
          {
            offsetMs: Number(response.event.value.offsetMs),
            nextUtteranceIndex: response.event.value.nextUtteranceIndex,
            at,
          },
        ]
      : [],
  );
}
