import type { EngineSlot } from '../engines/engine-slot.js';
import type { SpeechRecognizer, VoiceActivityDetector } from '../engines/types.js';
import type { Transcription } from '../gen/cortex/voice/v1/transcription_pb.js';
import type { ServiceHandlers } from './context.js';

export interface TranscriptionEngines {
  readonly vad: EngineSlot<VoiceActivityDetector>;
  readonly recognizer: EngineSlot<SpeechRecognizer>;
}

/** Handlers of cortex.voice.v1.Transcription. */
export function createTranscriptionService(
  engines: TranscriptionEngines,
): ServiceHandlers<typeof Transcription> {
  return {
    transcribe(_requests, _ctx) {
      engines.vad.require();
      engines.recognizer.require();
      return noResponses();
    },
    async transcribeFile(_request, _ctx) {
      engines.vad.require();
      engines.recognizer.require();
      return {};
    },
  };
}

async function* noResponses(): AsyncGenerator<never> {}
