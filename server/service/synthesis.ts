import type { EngineSlot } from '../engines/engine-slot.js';
import type { SpeechSynthesizer } from '../engines/types.js';
import type { Synthesis } from '../gen/cortex/voice/v1/synthesis_pb.js';
import type { ServiceHandlers } from './context.js';

export interface SynthesisEngines {
  readonly synthesizer: EngineSlot<SpeechSynthesizer>;
}

/** Handlers of cortex.voice.v1.Synthesis. */
export function createSynthesisService(engines: SynthesisEngines): ServiceHandlers<typeof Synthesis> {
  return {
    synthesize(_requests, _ctx) {
      engines.synthesizer.require();
      return noResponses();
    },
    synthesizeText(_request, _ctx) {
      engines.synthesizer.require();
      return noResponses();
    },
    async listVoices(_request, _ctx) {
      engines.synthesizer.require();
      return {};
    },
  };
}

async function* noResponses(): AsyncGenerator<never> {}
