/**
 * The misbehaving clients of the chaos run, each on a connection of its own so that only the
 * server sees them: synthesis callers that stop reading, and Transcribe streams whose connection
 * is torn down in the middle (the SDK's session aborted, or the TCP socket reset).
 */
import { connect } from 'node:http2';
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  AudioEncoding,
  createVoiceClient,
  type TranscribeRequest,
  TranscribeRequestSchema,
  TranscriptionConfigSchema,
} from '../clients/node/index.js';
import { SAMPLE_RATE, type StreamAudio, toLinear16 } from './stt-audio.js';

/** How a slow reader misbehaves. */
export type ReaderKind = 'never-reads' | 'reads-one-then-stops' | 'reads-every-2s';

export interface SlowReader {
  readonly kind: ReaderKind;
  /** Bytes of audio it took from the server. */
  readonly bytesRead: () => number;
  /** Cancels the call and closes its connection. */
  stop(): Promise<void>;
}

/** Text for about `seconds` of eSpeak speech (roughly 14 characters a second). */
export function longText(seconds: number, variant: number): string {
  const sentence = `This is a long answer, number ${variant}, that nobody will listen to until the end.`;
  return Array.from({ length: Math.ceil((seconds * 14) / sentence.length) }, () => sentence).join(' ');
}

/**
 * Starts a synthesis whose reader misbehaves: SynthesizeText for `never-reads` and
 * `reads-every-2s`, a Synthesize stream (text sent, then not read) for `reads-one-then-stops`.
 */
export function startSlowReader(address: string, kind: ReaderKind, text: string): SlowReader {
  const client = createVoiceClient({ address });
  const controller = new AbortController();
  let bytes = 0;
  const responses =
    kind === 'reads-one-then-stops'
      ? client.synthesis.synthesize(
          (async function* () {
            yield { request: { case: 'config' as const, value: { encoding: AudioEncoding.LINEAR16 } } };
            yield { request: { case: 'text' as const, value: text } };
            // The request side stays open: an LLM still "writing" while nobody listens.
            await sleep(3_600_000, undefined, { signal: controller.signal }).catch(() => {});
          })(),
          { signal: controller.signal },
        )
      : client.synthesis.synthesizeText(
          { text, config: { encoding: AudioEncoding.LINEAR16 } },
          { signal: controller.signal },
        );
  const iterator = responses[Symbol.asyncIterator]();
  const reading = (async () => {
    // The first read sends the call; `never-reads` then stops, having taken one message.
    const first = await iterator.next();
    if (!first.done) bytes += first.value.audio.length;
    if (kind !== 'reads-every-2s') return;
    for (;;) {
      await sleep(2000, undefined, { signal: controller.signal });
      const next = await iterator.next();
      if (next.done) return;
      bytes += next.value.audio.length;
    }
  })().catch(() => {});
  return {
    kind,
    bytesRead: () => bytes,
    async stop() {
      controller.abort();
      await reading;
      client.close();
    },
  };
}

export type ResetKind = 'sdk-abort' | 'tcp-reset';

/**
 * A Transcribe stream that sends real-time audio and, after `afterMs`, loses its connection:
 * `sdk-abort` aborts the SDK's HTTP/2 session (client.close()), `tcp-reset` writes the call by
 * hand over node:http2 and resets the TCP socket (RST, no HTTP/2 goodbye).
 */
export async function resetStream(
  address: string,
  kind: ResetKind,
  audio: StreamAudio,
  afterMs: number,
  config: { readonly model: string; readonly chunkMs: number },
): Promise<void> {
  const pcm = toLinear16(audio.samples);
  const chunkBytes = Math.round((config.chunkMs / 1000) * SAMPLE_RATE) * 2;
  const configRequest: TranscribeRequest['request'] = {
    case: 'config',
    value: create(TranscriptionConfigSchema, {
      audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: SAMPLE_RATE, channels: 1 },
      language: 'en',
      model: config.model,
    }),
  };
  const audioRequest = (chunk: number): TranscribeRequest['request'] => ({
    case: 'audio',
    value: pcm.subarray(chunk * chunkBytes, (chunk + 1) * chunkBytes),
  });
  const chunks = Math.ceil(pcm.length / chunkBytes);
  const until = performance.now() + afterMs;
  if (kind === 'sdk-abort') {
    const client = createVoiceClient({ address });
    const call = client.transcription.transcribe(
      (async function* () {
        yield { request: configRequest };
        for (let chunk = 0; chunk < chunks; chunk += 1) {
          await sleep(config.chunkMs);
          yield { request: audioRequest(chunk) };
        }
      })(),
    );
    const reading = (async () => {
      for await (const _ of call) {
        // Events are read and dropped.
      }
    })().catch(() => {});
    await sleep(Math.max(0, until - performance.now()));
    client.close();
    await reading;
    return;
  }
  const [host, port] = address.split(':');
  // The socket is ours, so that it can be reset (http2 sessions hide theirs behind a proxy).
  const socket = createConnection({ host: host ?? '127.0.0.1', port: Number(port) });
  socket.on('error', () => {});
  const session = connect(`http://${address}`, { createConnection: () => socket });
  session.on('error', () => {});
  const stream = session.request({
    ':method': 'POST',
    ':path': '/cortex.voice.v1.Transcription/Transcribe',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  stream.on('data', () => {});
  const frame = (message: TranscribeRequest['request']) => {
    const body = toBinary(TranscribeRequestSchema, create(TranscribeRequestSchema, { request: message }));
    const out = new Uint8Array(5 + body.length);
    new DataView(out.buffer).setUint32(1, body.length);
    out.set(body, 5);
    return out;
  };
  stream.write(frame(configRequest));
  for (let chunk = 0; chunk < chunks && performance.now() < until; chunk += 1) {
    await sleep(config.chunkMs);
    stream.write(frame(audioRequest(chunk)));
  }
  socket.resetAndDestroy();
  session.destroy();
}
