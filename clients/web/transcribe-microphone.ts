import { Code, ConnectError } from '@connectrpc/connect';
import { AudioEncoding } from '../../server/gen/cortex/voice/v1/audio_pb.js';
import type { TranscribeResponse } from '../../server/gen/cortex/voice/v1/transcription_pb.js';
import { createAppendSender, type RetryOptions } from './append-sender.js';
import { createEventQueue } from './event-queue.js';
import type { LiveSessionApi, TranscriptionConfigInit } from './live-session.js';
import { type AudioCapture, CAPTURE_RATE, type CaptureOptions, startCapture } from './microphone.js';
import { opusRecordingFormat, startOpusCapture } from './opus-capture.js';
import { transcribeMicrophoneResumable } from './resumable-microphone.js';
import type { SessionResumeOptions } from './resumable-session.js';

export interface TranscribeMicrophoneOptions extends CaptureOptions {
  /**
   * Recognition settings (language, interim results, endpointing, timestamps, model). The audio
   * format is the SDK's own: LINEAR16, 16 kHz, mono.
   */
  readonly config?: Omit<TranscriptionConfigInit, 'audioFormat' | '$typeName'>;
  /**
   * `linear16` (default): 16 kHz PCM from an AudioWorklet, 256 kbit/s. `opus`: the browser's
   * MediaRecorder encodes Opus (WebM in Chromium, Ogg in Firefox), about 32 kbit/s, for slow
   * networks; it cannot be combined with `resume` (the server resumes raw PCM only).
   */
  readonly codec?: 'linear16' | 'opus';
  /** With codec `opus`: the encoder's target bit rate (default 32 000). */
  readonly opusBitsPerSecond?: number;
  /** Cancels everything: the session, the appends and the capture. */
  readonly signal?: AbortSignal;
  /** How a failed append is retried (with its sequence number kept). */
  readonly retry?: RetryOptions;
  /**
   * Survive the session's loss (its server drained or stopped, the connection dropped): keep the
   * audio the server has not committed, and reopen the session from the last AudioCommitted point,
   * replaying it, without repeated events. true for the default options.
   */
  readonly resume?: boolean | SessionResumeOptions;
}

/**
 * A live transcription of a microphone: iterate it (once) for the events — speech started,
 * interim and final results, speech ended — as they arrive.
 */
export interface MicrophoneTranscription extends AsyncIterable<TranscribeResponse> {
  /** The session's id, once the server has opened it. */
  readonly sessionId: Promise<string>;
  /**
   * Page-clock origin of the stream's timeline, in epoch ms (performance.timeOrigin +
   * performance.now()): a result's `endMs` was captured at about `startedAt + endMs`.
   */
  readonly startedAt: number | undefined;
  /**
   * Ends the audio: the buffered audio is sent with the end-of-audio flag, the server recognises
   * the pending utterance, every final arrives, then the iteration ends and this resolves. The
   * MediaStream's tracks are left running (they are the caller's).
   */
  stop(): Promise<void>;
  /** Settles when the transcription is over: after stop(), on cancel, or with what ended it. */
  readonly done: Promise<void>;
}

/** The most audio one append carries (16 s at 16 kHz); less when the server says so. */
const DEFAULT_MAX_CHUNK_BYTES = 512 * 1024;

/** Streams `stream` to a live session and returns its events. */
export function transcribeMicrophone(
  api: LiveSessionApi,
  stream: MediaStream,
  options: TranscribeMicrophoneOptions = {},
): MicrophoneTranscription {
  const opus = options.codec === 'opus' ? opusRecordingFormat() : undefined;
  if (options.codec === 'opus' && opus === undefined)
    throw new TypeError('codec: "opus" needs MediaRecorder with WebM or Ogg Opus, which this browser lacks');
  if (options.codec === 'opus' && options.resume !== undefined && options.resume !== false)
    throw new TypeError(
      'codec: "opus" cannot be resumed; the server resumes raw PCM only (use codec "linear16")',
    );
  if (options.resume !== undefined && options.resume !== false) {
    const resume = options.resume === true ? {} : options.resume;
    return transcribeMicrophoneResumable(api, stream, options, resume, DEFAULT_MAX_CHUNK_BYTES);
  }
  const controller = new AbortController();
  const signal =
    options.signal === undefined ? controller.signal : AbortSignal.any([options.signal, controller.signal]);
  const events = createEventQueue<TranscribeResponse>(() => controller.abort());

  let opened!: (id: string) => void;
  let notOpened!: (error: unknown) => void;
  const sessionId = new Promise<string>((resolve, reject) => {
    opened = resolve;
    notOpened = reject;
  });
  sessionId.catch(() => {});

  let maxChunkBytes = DEFAULT_MAX_CHUNK_BYTES;
  const sender = createAppendSender({
    append: async (chunk, call) => api.append(await sessionId, chunk, call),
    signal,
    firstSequenceNumber: api.firstSequenceNumber,
    maxAppendBytes: () => maxChunkBytes,
    ...(options.retry === undefined ? {} : { retry: options.retry }),
  });

  const config: TranscriptionConfigInit = {
    ...options.config,
    audioFormat:
      opus === undefined
        ? { encoding: AudioEncoding.LINEAR16, sampleRateHz: CAPTURE_RATE, channels: 1 }
        : { encoding: opus.encoding },
  };
  const reading = (async () => {
    let named = false;
    for await (const message of api.open(config, { signal })) {
      if (message.kind === 'opened') {
        named = true;
        if (message.maxChunkBytes !== undefined)
          maxChunkBytes = Math.min(maxChunkBytes, message.maxChunkBytes);
        opened(message.sessionId);
      } else events.push(message.event);
    }
    if (!named) throw new ConnectError('the session stream ended before naming a session', Code.Internal);
  })();

  let stopping: Promise<void> | undefined;
  let capture: AudioCapture | undefined;
  const captureReady: Promise<AudioCapture> =
    opus === undefined
      ? startCapture(stream, options)
      : startOpusCapture(stream, {
          ...(options.chunkMs === undefined ? {} : { chunkMs: options.chunkMs }),
          ...(options.opusBitsPerSecond === undefined ? {} : { bitsPerSecond: options.opusBitsPerSecond }),
        });
  const capturing = captureReady.then(async (started) => {
    capture = started;
    for await (const chunk of started.chunks) sender.push(chunk);
  });
  // Closing ends the capture's chunks, which ends `capturing`.
  const closeCapture = async () => {
    const started = await captureReady.catch(() => undefined);
    await started?.close();
  };
  signal.addEventListener('abort', () => void closeCapture(), { once: true });

  // The first failure (the microphone, an append, the stream) is what everything ends with.
  let failure: unknown;
  let finished = false;
  const fail = (error: unknown) => {
    failure ??= error;
    events.fail(error);
    notOpened(error);
    controller.abort(error);
  };
  capturing.catch(fail);
  sender.done.catch(fail);
  const done = reading.then(
    async () => {
      finished = true;
      events.end();
      // A session the server ended before the end of the audio: stop sending.
      if (!stopping) controller.abort();
      await closeCapture();
    },
    async (error: unknown) => {
      finished = true;
      fail(error);
      await closeCapture();
      throw ConnectError.from(failure);
    },
  );
  done.catch(() => {});

  return {
    sessionId,
    get startedAt() {
      return capture?.startedAt;
    },
    done,
    stop() {
      stopping ??= (async () => {
        if (!finished) {
          const started = await captureReady;
          await started.flush();
          await capturing;
          await started.close();
          // An append that fails for good fails the whole transcription: `done` says why.
          await sender.end().catch(() => {});
        }
        await done;
      })();
      return stopping;
    },
    [Symbol.asyncIterator]: () => events[Symbol.asyncIterator](),
  };
}
