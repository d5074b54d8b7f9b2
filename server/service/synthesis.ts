import type { Config } from '../config.js';
import type { EngineSlot } from '../engines/engine-slot.js';
import type { SpeechSynthesizer } from '../engines/types.js';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import type { Synthesis, SynthesizeRequest } from '../gen/cortex/voice/v1/synthesis_pb.js';
import { admit, type SharedServiceParts } from './admission.js';
import type { CallContext, ServiceHandlers } from './context.js';
import { drainedSynthesis, firstRequest } from './drain.js';
import { defaultVoice, resolveSynthesisSettings } from './synthesis-config.js';
import { type SynthesizeSessionDeps, synthesizeStream, type TextInput } from './synthesize-session.js';

export interface SynthesisEngines {
  readonly synthesizer: EngineSlot<SpeechSynthesizer>;
}

/** Handlers of cortex.voice.v1.Synthesis. */
export function createSynthesisService(
  engines: SynthesisEngines,
  config: Config,
  shared: SharedServiceParts,
): ServiceHandlers<typeof Synthesis> {
  const tts = config.models.tts;
  const dependencies = (ctx: CallContext): SynthesizeSessionDeps => ({
    synthesizer: engines.synthesizer.require(),
    limits: { maxTextChars: tts.max_text_chars, maxStreamTextChars: tts.max_stream_text_chars },
    parallelism: Math.min(2, config.performance.workers),
    onAudio: (seconds) => shared.onAudio?.(seconds, ctx),
    onInterruption: () => shared.onInterruption?.(),
  });

  return {
    async *synthesize(requests, ctx) {
      const deps = dependencies(ctx);
      using _slot = admit(shared.admission);
      const iterator = requests[Symbol.asyncIterator]();
      const first = await firstRequest(iterator, ctx.finishSignal);
      if (first === undefined) throw drainedSynthesis(0);
      if (first.done)
        throw invalidArgument('config', 'missing; the first SynthesizeRequest must carry config');
      if (first.value.request.case !== 'config') {
        throw first.value.request.case === undefined
          ? emptyRequest()
          : new VoiceError(
              Reason.OutOfOrder,
              `${first.value.request.case} arrived before config; the first SynthesizeRequest must carry config`,
            );
      }
      const settings = resolveSynthesisSettings(first.value.request.value, tts, deps.synthesizer.voices());
      yield* synthesizeStream(textOf(iterator), settings, deps, ctx.signal, { finish: ctx.finishSignal });
    },

    async *synthesizeText(request, ctx) {
      const deps = dependencies(ctx);
      using _slot = admit(shared.admission);
      const settings = resolveSynthesisSettings(request.config, tts, deps.synthesizer.voices());
      if (request.text.trim() === '')
        throw invalidArgument('text', 'empty or only whitespace; send something to say');
      yield* synthesizeStream(single(request.text), settings, deps, ctx.signal, { finish: ctx.finishSignal });
    },

    async listVoices(request) {
      const synthesizer = engines.synthesizer.require();
      const voices = synthesizer.voices();
      const chosen = defaultVoice(tts.voice, voices);
      const language = request.language.trim().toLowerCase();
      const listed = voices
        .filter((voice) => language === '' || voice.language.toLowerCase().split('-')[0] === language)
        .map((voice) => ({
          id: voice.id,
          name: voice.name,
          language: voice.language,
          engine: voice.engine,
          model: voice.model,
          speaker: voice.speaker,
          sampleRateHz: voice.sampleRate,
          isDefault: voice.id === chosen?.id,
        }));
      listed.sort((a, b) => Number(b.isDefault) - Number(a.isDefault));
      return { voices: listed };
    },
  };
}

async function* textOf(iterator: AsyncIterator<SynthesizeRequest>): AsyncGenerator<TextInput> {
  while (true) {
    const next = await iterator.next();
    if (next.done) return;
    const request = next.value.request;
    switch (request.case) {
      case 'text':
        yield { kind: 'text', text: request.value };
        break;
      case 'flush':
        yield { kind: 'flush' };
        break;
      case 'clear': {
        const played = request.value.playedSamples;
        yield { kind: 'clear', playedSamples: played === undefined ? undefined : Number(played) };
        break;
      }
      case 'config':
        throw new VoiceError(
          Reason.OutOfOrder,
          'config: sent twice; only the first SynthesizeRequest may carry config',
        );
      default:
        throw emptyRequest();
    }
  }
}

async function* single(text: string): AsyncGenerator<TextInput> {
  yield { kind: 'text', text };
}

function emptyRequest(): VoiceError {
  return invalidArgument('request', 'a SynthesizeRequest must carry config, text, flush or clear');
}
