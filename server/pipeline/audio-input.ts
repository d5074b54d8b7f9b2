import { Reason, VoiceError } from '../errors.js';
import { openAudioDecoder } from './audio-decode.js';
import type { InputFormat } from './audio-format.js';
import { createResampler, type Resampler } from './resample.js';

/** The sample rate every recognition stage works at. */
export const RECOGNITION_RATE = 16_000;

export interface AudioInputLimits {
  /** Largest single chunk, in bytes (performance.max_audio_chunk_bytes). */
  readonly maxChunkBytes: number;
  /** Longest audio per stream, in seconds (performance.max_audio_seconds). */
  readonly maxAudioSeconds: number;
}

/**
 * Decodes a stream of audio chunks in the configured format and resamples it to 16 kHz mono, with
 * the decoder's and resampler's state kept across chunks. Ends with everything the resampler held.
 */
export async function* toRecognitionAudio(
  chunks: AsyncIterable<Uint8Array>,
  format: InputFormat,
  limits: AudioInputLimits,
  /** Told the input samples (per channel) decoded so far and their rate, after each chunk. */
  onInput?: (samples: number, sampleRate: number) => void,
  /**
   * Told when the decoder refuses the stream's end (it stopped inside a page, element or sample
   * frame: truncated). The audio before it then ends as if the stream had ended cleanly, so that
   * the caller can finish its speech before failing the call. Absent: the error is thrown.
   */
  onBadEnd?: (error: unknown) => void,
): AsyncGenerator<Float32Array> {
  // Opus is decoded straight to the recognition rate: libopus does it for less than resampling costs.
  const decoder = openAudioDecoder(format, { opusRate: RECOGNITION_RATE });
  let resampler: Resampler | undefined;
  let inputSamples = 0;
  const resample = async (samples: Float32Array): Promise<Float32Array> => {
    if (samples.length === 0) return samples;
    const rate = decoder.sampleRate;
    if (rate === undefined) throw new Error('decoded samples before the sample rate was known');
    inputSamples += samples.length;
    onInput?.(inputSamples, rate);
    if (inputSamples > limits.maxAudioSeconds * rate) {
      throw new VoiceError(
        Reason.LimitExceeded,
        `audio: the stream is longer than performance.max_audio_seconds (${limits.maxAudioSeconds} s)`,
        { info: { limit: 'performance.max_audio_seconds' } },
      );
    }
    resampler ??= await createResampler(rate, RECOGNITION_RATE);
    return resampler.push(samples);
  };
  try {
    for await (const chunk of chunks) {
      if (chunk.length > limits.maxChunkBytes) {
        throw new VoiceError(
          Reason.LimitExceeded,
          `audio: a chunk of ${chunk.length} bytes is larger than performance.max_audio_chunk_bytes (${limits.maxChunkBytes})`,
          { info: { limit: 'performance.max_audio_chunk_bytes' } },
        );
      }
      const samples = await resample(await decoder.push(chunk));
      if (samples.length > 0) yield samples;
    }
    const rest = await decoder.end().catch((error: unknown) => {
      if (onBadEnd === undefined) throw error;
      onBadEnd(error);
      return new Float32Array(0);
    });
    const resampled = await resample(rest);
    if (resampled.length > 0) yield resampled;
    const held = resampler?.flush();
    if (held && held.length > 0) yield held;
  } finally {
    decoder.close();
    resampler?.close();
  }
}
