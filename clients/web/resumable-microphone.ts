import { AudioEncoding } from '../../server/gen/cortex/voice/v1/audio_pb.js';
import type { LiveSessionApi, TranscriptionConfigInit } from './live-session.js';
import { type AudioCapture, CAPTURE_RATE, startCapture } from './microphone.js';
import { openResumableSession, type SessionResumeOptions } from './resumable-session.js';
import type { MicrophoneTranscription, TranscribeMicrophoneOptions } from './transcribe-microphone.js';

/** transcribeMicrophone with `resume`: the capture feeds a session that is reopened when lost. */
export function transcribeMicrophoneResumable(
  api: LiveSessionApi,
  stream: MediaStream,
  options: TranscribeMicrophoneOptions,
  resume: SessionResumeOptions,
  maxChunkBytes: number,
): MicrophoneTranscription {
  const controller = new AbortController();
  const signal =
    options.signal === undefined ? controller.signal : AbortSignal.any([options.signal, controller.signal]);
  const config: TranscriptionConfigInit = {
    ...options.config,
    audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: CAPTURE_RATE, channels: 1 },
  };
  const session = openResumableSession(api, {
    config,
    format: { frameBytes: 2, sampleRate: CAPTURE_RATE },
    signal,
    retry: options.retry,
    resume,
    maxChunkBytes,
  });
  let capture: AudioCapture | undefined;
  const captureReady = startCapture(stream, options);
  const capturing = captureReady.then(async (started) => {
    capture = started;
    for await (const chunk of started.chunks) session.push(chunk);
  });
  const closeCapture = async () => (await captureReady.catch(() => undefined))?.close();
  capturing.catch((error: unknown) => controller.abort(error));
  const done = session.done.finally(closeCapture);
  done.catch(() => {});
  let stopping: Promise<void> | undefined;
  return {
    sessionId: session.sessionId,
    get startedAt() {
      return capture?.startedAt;
    },
    done,
    stop() {
      stopping ??= (async () => {
        const started = await captureReady;
        await started.flush();
        await capturing;
        await started.close();
        await session.end().catch(() => {});
        await done;
      })();
      return stopping;
    },
    [Symbol.asyncIterator]: () => session.events[Symbol.asyncIterator](),
  };
}
