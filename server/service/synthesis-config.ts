import type { Config } from '../config.js';
import type { VoiceInfo } from '../engines/types.js';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import type { SynthesisConfig } from '../gen/cortex/voice/v1/synthesis_pb.js';
import { type OutputFormat, validateOutputFormat } from '../pipeline/audio-format.js';

export const MIN_SPEED = 0.5;
export const MAX_SPEED = 2.0;

/** A SynthesisConfig checked field by field, with the server's defaults filled in. */
export interface SynthesisSettings {
  readonly voice: VoiceInfo;
  readonly speed: number;
  readonly output: OutputFormat;
  /** The rate of the returned audio: the requested one or the voice's own. */
  readonly sampleRate: number;
}

export function resolveSynthesisSettings(
  config: SynthesisConfig | undefined,
  defaults: Config['models']['tts'],
  voices: readonly VoiceInfo[],
): SynthesisSettings {
  const voice = resolveVoice(config?.voice ?? '', defaults.voice, voices);
  const speed = config?.speed === undefined || config.speed === 0 ? defaults.speed : config.speed;
  if (!Number.isFinite(speed) || speed < MIN_SPEED || speed > MAX_SPEED) {
    throw invalidArgument(
      'config.speed',
      `${Number(speed.toPrecision(6))} is out of range; allowed ${MIN_SPEED} to ${MAX_SPEED.toFixed(1)}, or 0 for 1.0`,
    );
  }
  const output = validateOutputFormat(config?.encoding ?? 0, config?.sampleRateHz ?? 0, 'config');
  return { voice, speed, output, sampleRate: output.sampleRate ?? voice.sampleRate };
}

/** The default voice is the configured one when it is loaded, else the first voice listed. */
export function defaultVoice(configured: string, voices: readonly VoiceInfo[]): VoiceInfo | undefined {
  return voices.find((voice) => voice.id === configured) ?? voices[0];
}

function resolveVoice(requested: string, configured: string, voices: readonly VoiceInfo[]): VoiceInfo {
  if (requested === '') {
    const fallback = defaultVoice(configured, voices);
    if (!fallback) throw new VoiceError(Reason.EngineUnavailable, 'no voice is loaded');
    return fallback;
  }
  const voice = voices.find((candidate) => candidate.id === requested);
  if (voice) return voice;
  const prefix = requested.split(':')[0] ?? '';
  const related = voices.filter((candidate) => candidate.id.startsWith(`${prefix}:`));
  // The default voice first: with 100+ eSpeak voices it would otherwise fall outside the first 20.
  const candidates = new Set([defaultVoice(configured, voices), ...(related.length > 0 ? related : voices)]);
  const shown = [...candidates].flatMap((candidate) => (candidate ? [candidate.id] : [])).slice(0, 20);
  const more = voices.length > shown.length ? `, … (${voices.length} in all; ListVoices lists them)` : '';
  throw new VoiceError(
    Reason.UnknownResource,
    `config.voice: unknown voice "${requested}"; valid ids: ${shown.join(', ')}${more}`,
    { info: { field: 'config.voice' } },
  );
}
