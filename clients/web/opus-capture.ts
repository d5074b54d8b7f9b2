import { AudioEncoding } from '../../server/gen/cortex/voice/v1/audio_pb.js';
import { createEventQueue } from './event-queue.js';
import type { AudioCapture } from './microphone.js';

/**
 * Microphone capture as Opus through the browser's MediaRecorder: WebM in Chromium, Ogg in
 * Firefox and Safari where they record it. About 32 kbit/s instead of 256 for 16 kHz LINEAR16, so a
 * phone on a weak network keeps up; the server decodes it as a stream (AUDIO_ENCODING_WEBM_OPUS /
 * OGG_OPUS). The recorder's chunks are sent as they come: they split the container anywhere.
 */

export interface OpusFormat {
  readonly encoding: AudioEncoding;
  readonly mimeType: string;
}

const CANDIDATES: readonly OpusFormat[] = [
  { encoding: AudioEncoding.WEBM_OPUS, mimeType: 'audio/webm;codecs=opus' },
  { encoding: AudioEncoding.OGG_OPUS, mimeType: 'audio/ogg;codecs=opus' },
];

/** The Opus container this browser's MediaRecorder writes, or undefined if it writes neither. */
export function opusRecordingFormat(): OpusFormat | undefined {
  if (typeof MediaRecorder === 'undefined') return undefined;
  return CANDIDATES.find((format) => MediaRecorder.isTypeSupported(format.mimeType));
}

export interface OpusCaptureOptions {
  /** How often the recorder hands over what it has, in ms (default 100). */
  readonly chunkMs?: number;
  /** The encoder's target bit rate (default 32 000). */
  readonly bitsPerSecond?: number;
}

export interface OpusCapture extends AudioCapture {
  readonly format: OpusFormat;
}

/** Records `stream` as Opus; chunks are the container's bytes, in order. */
export async function startOpusCapture(
  stream: MediaStream,
  options: OpusCaptureOptions = {},
): Promise<OpusCapture> {
  const format = opusRecordingFormat();
  if (format === undefined) throw new TypeError('this browser cannot record Opus with MediaRecorder');
  if (stream.getAudioTracks().length === 0) throw new TypeError('the MediaStream has no audio track');
  const audioOnly = new MediaStream(stream.getAudioTracks());
  const recorder = new MediaRecorder(audioOnly, {
    mimeType: format.mimeType,
    audioBitsPerSecond: options.bitsPerSecond ?? 32_000,
  });
  const chunks = createEventQueue<Uint8Array>();
  let startedAt: number | undefined;
  // Blob reads finish in any order; chaining them keeps the bytes in stream order.
  let reading: Promise<void> = Promise.resolve();
  recorder.ondataavailable = (event) => {
    const blob = event.data;
    reading = reading
      .then(async () => {
        if (blob.size > 0) chunks.push(new Uint8Array(await blob.arrayBuffer()));
      })
      .catch((error: unknown) => chunks.fail(error));
  };
  const stopped = new Promise<void>((resolve) => {
    recorder.onstop = () => {
      void reading.then(() => {
        chunks.end();
        resolve();
      });
    };
  });
  recorder.onerror = (event) => chunks.fail((event as ErrorEvent).error ?? new Error('MediaRecorder failed'));
  await new Promise<void>((resolve) => {
    recorder.onstart = () => {
      startedAt = performance.timeOrigin + performance.now();
      resolve();
    };
    recorder.start(options.chunkMs ?? 100);
  });
  const stop = async () => {
    if (recorder.state !== 'inactive') recorder.stop();
    await stopped;
  };
  return {
    format,
    chunks,
    flush: stop,
    close: stop,
    get startedAt() {
      return startedAt;
    },
  };
}
