import type { Config } from '../config.js';
import type { EngineSlot } from '../engines/engine-slot.js';
import type { SpeechRecognizer, VoiceActivityDetector } from '../engines/types.js';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import type { TranscribeRequest, Transcription } from '../gen/cortex/voice/v1/transcription_pb.js';
import { admit, type SharedServiceParts } from './admission.js';
import type { ServiceHandlers } from './context.js';
import { type TranscribeSessionDeps, transcribeStream } from './transcribe-session.js';
import { resolveTranscriptionSettings } from './transcription-config.js';

export interface TranscriptionEngines {
  readonly vad: EngineSlot<VoiceActivityDetector>;
  readonly recognizer: EngineSlot<SpeechRecognizer>;
}

/** A whole clip is fed to the pipeline in slices of this size, like a stream. */
const FILE_SLICE_BYTES = 64 * 1024;

/** Handlers of cortex.voice.v1.Transcription. */
export function createTranscriptionService(
  engines: TranscriptionEngines,
  config: Config,
  shared: SharedServiceParts,
): ServiceHandlers<typeof Transcription> {
  const limits = {
    maxChunkBytes: config.performance.max_audio_chunk_bytes,
    maxAudioSeconds: config.performance.max_audio_seconds,
  };
  const dependencies = (): TranscribeSessionDeps => ({
    vad: engines.vad.require(),
    recognizer: engines.recognizer.require(),
    limits,
    onAudio: shared.onAudio,
  });

  return {
    async *transcribe(requests, ctx) {
      const deps = dependencies();
      using _slot = admit(shared.admission);
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done)
        throw invalidArgument('config', 'missing; the first TranscribeRequest must carry config');
      if (first.value.request.case !== 'config') {
        throw first.value.request.case === 'audio'
          ? new VoiceError(
              Reason.OutOfOrder,
              'audio arrived before config; the first TranscribeRequest must carry config',
            )
          : emptyRequest();
      }
      const settings = resolveTranscriptionSettings(
        first.value.request.value,
        config.models,
        deps.recognizer,
      );
      yield* transcribeStream(audioOf(iterator), settings, deps, ctx.signal);
    },

    async transcribeFile(request, ctx) {
      const deps = dependencies();
      using _slot = admit(shared.admission);
      const settings = {
        ...resolveTranscriptionSettings(request.config, config.models, deps.recognizer),
        interimResults: false,
      };
      if (request.audio.length === 0) throw invalidArgument('audio', 'empty; send the whole clip');
      let analysedMs = 0;
      const results = [];
      const stream = transcribeStream(slices(request.audio), settings, deps, ctx.signal, {
        onProgress: (offsetMs) => {
          analysedMs = offsetMs;
        },
      });
      for await (const response of stream) {
        if (response.event?.case === 'result') results.push(response.event.value);
      }
      return { results, durationMs: Math.round(analysedMs) };
    },
  };
}

async function* audioOf(iterator: AsyncIterator<TranscribeRequest>): AsyncGenerator<Uint8Array> {
  while (true) {
    const next = await iterator.next();
    if (next.done) return;
    const request = next.value.request;
    if (request.case === 'audio') yield request.value;
    else if (request.case === 'config') {
      throw new VoiceError(
        Reason.OutOfOrder,
        'config: sent twice; only the first TranscribeRequest may carry config',
      );
    } else throw emptyRequest();
  }
}

async function* slices(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += FILE_SLICE_BYTES) {
    yield bytes.subarray(offset, offset + FILE_SLICE_BYTES);
  }
}

function emptyRequest(): VoiceError {
  return invalidArgument('request', 'a TranscribeRequest must carry config or audio');
}
