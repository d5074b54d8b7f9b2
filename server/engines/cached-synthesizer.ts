import type { SpeechSynthesizer, SynthesizedAudio, SynthesizeOptions, VoiceInfo } from './types.js';

export interface SynthesisCacheOptions {
  /** Capacity in bytes of audio kept; 0 disables the cache. */
  readonly maxBytes: number;
  readonly onLookup?: (result: 'hit' | 'miss') => void;
}

export interface CachedSynthesizer extends SpeechSynthesizer {
  /** Bytes of audio held now. */
  readonly cachedBytes: number;
}

/**
 * A least-recently-used cache of synthesized sentences in front of a synthesizer, keyed by voice,
 * speed and text, so repeated phrases (greetings, confirmations) cost nothing. Output format is
 * applied later, so one entry serves every encoding and rate.
 */
export function createCachedSynthesizer(
  inner: SpeechSynthesizer,
  options: SynthesisCacheOptions,
): CachedSynthesizer {
  const entries = new Map<string, SynthesizedAudio>();
  let bytes = 0;

  const remember = (key: string, audio: SynthesizedAudio) => {
    const size = audio.samples.byteLength;
    if (size > options.maxBytes) return;
    // Concurrent misses for one key each arrive here; the last one replaces the others.
    const previous = entries.get(key);
    if (previous) {
      entries.delete(key);
      bytes -= previous.samples.byteLength;
    }
    entries.set(key, audio);
    bytes += size;
    for (const [oldest, value] of entries) {
      if (bytes <= options.maxBytes) break;
      entries.delete(oldest);
      bytes -= value.samples.byteLength;
    }
  };

  return {
    get cachedBytes() {
      return bytes;
    },
    voices: (): readonly VoiceInfo[] => inner.voices(),
    async synthesize(text: string, call: SynthesizeOptions): Promise<SynthesizedAudio> {
      if (options.maxBytes <= 0) return inner.synthesize(text, call);
      const key = `${call.voice}\u0000${call.speed}\u0000${text}`;
      const cached = entries.get(key);
      if (cached) {
        entries.delete(key);
        entries.set(key, cached);
        options.onLookup?.('hit');
        call.signal.throwIfAborted();
        return copy(cached);
      }
      options.onLookup?.('miss');
      const audio = await inner.synthesize(text, call);
      remember(key, audio);
      return copy(audio);
    },
  };
}

/** Callers may transfer or modify what they get; the cache keeps its own copy. */
function copy(audio: SynthesizedAudio): SynthesizedAudio {
  return { ...audio, samples: audio.samples.slice() };
}
