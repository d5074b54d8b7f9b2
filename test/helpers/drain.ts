import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  AudioEncoding,
  type ConnectError,
  errorInfoOf,
  errorReasonOf,
  type TranscribeResponse,
  type TranscriptResult,
} from '../../clients/node/index.js';
import { SynthesizeTextRequestSchema } from '../../server/gen/cortex/voice/v1/synthesis_pb.js';

/** The reason a call ended with, from its google.rpc.ErrorInfo. */
export function reasonOf(error: ConnectError): string | null {
  return errorReasonOf(error) ?? null;
}

/**
 * The milliseconds of audio a drained transcription says it processed: its ErrorInfo's
 * processed_audio_ms, which the status message must state too.
 */
export function processedMsOf(error: ConnectError): number {
  const processed = errorInfoOf(error)?.metadata.processed_audio_ms;
  assert.ok(processed !== undefined && /^\d+$/.test(processed), 'ErrorInfo carries processed_audio_ms');
  const match = /audio through (\d+\.\d{3}) s was transcribed, resend the rest to another instance/.exec(
    error.rawMessage,
  );
  assert.ok(match, `a drained transcription says how much was transcribed: ${error.rawMessage}`);
  assert.equal(Math.round(Number(match[1]) * 1000), Number(processed), 'the message and ErrorInfo agree');
  return Number(processed);
}

/** The characters a drained synthesis says it spoke: its ErrorInfo's spoken_text_chars, as its message says. */
export function spokenCharsOf(error: ConnectError): number {
  const spoken = errorInfoOf(error)?.metadata.spoken_text_chars;
  assert.ok(spoken !== undefined && /^\d+$/.test(spoken), 'ErrorInfo carries spoken_text_chars');
  const match = /the text through character (\d+) was spoken, resend the rest to another instance/.exec(
    error.rawMessage,
  );
  assert.ok(match, `a drained synthesis says how much was spoken: ${error.rawMessage}`);
  assert.equal(Number(match[1]), Number(spoken), 'the message and ErrorInfo agree');
  return Number(spoken);
}

/** Where the VAD's analysis of `samples` 16 kHz samples ends: whole 32 ms frames. */
export function analysedMs(samples: number): number {
  return Math.floor(samples / 512) * 32;
}

/** A stream's responses as they arrive, with a wait for one that matches. */
export interface Observed<T> {
  readonly seen: T[];
  /** Every response; rejects with the call's error. */
  readonly done: Promise<T[]>;
  until(predicate: (response: T) => boolean): Promise<T>;
}

export function observe<T>(stream: AsyncIterable<T>): Observed<T> {
  const seen: T[] = [];
  const waiters = new Set<{ predicate: (response: T) => boolean; resolve: (response: T) => void }>();
  const done = (async () => {
    for await (const response of stream) {
      seen.push(response);
      for (const waiter of waiters) {
        if (waiter.predicate(response)) {
          waiters.delete(waiter);
          waiter.resolve(response);
        }
      }
    }
    return seen;
  })();
  done.catch(() => {});
  return {
    seen,
    done,
    until(predicate) {
      const found = seen.find(predicate);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        waiters.add({ predicate, resolve });
        done.then(() => reject(new Error('the stream ended first')), reject);
      });
    },
  };
}

export const finalsOf = (responses: readonly TranscribeResponse[]): TranscriptResult[] =>
  responses.flatMap((response) =>
    response.event.case === 'result' && response.event.value.isFinal ? [response.event.value] : [],
  );

/** A promise and the function that resolves it. */
export function signalled(): { promise: Promise<void>; fire: () => void } {
  let fire = () => {};
  const promise = new Promise<void>((resolve) => {
    fire = resolve;
  });
  return { promise, fire };
}

/**
 * A SynthesizeText call from a raw HTTP/2 client that never reads its response: once the flow
 * control window is full the server cannot send the rest, so the call cannot finish on its own.
 * Its text has no punctuation (cut into 200-character pieces) and is spoken at half speed, so that
 * the first piece alone is more audio than the server queues. Resolves once the server has started
 * to answer (its handler is running).
 */
export async function stalledSynthesis(address: string): Promise<{ close(): void }> {
  const text = 'this reply is never read by its client '.repeat(20);
  const session = http2.connect(`http://${address}`);
  session.on('error', () => {});
  const message = toBinary(
    SynthesizeTextRequestSchema,
    create(SynthesizeTextRequestSchema, { text, config: { encoding: AudioEncoding.FLOAT32, speed: 0.5 } }),
  );
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  const request = session.request({
    ':method': 'POST',
    ':path': '/cortex.voice.v1.Synthesis/SynthesizeText',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  request.on('error', () => {});
  request.pause();
  request.end(frame);
  await once(request, 'response');
  return { close: () => session.destroy() };
}
