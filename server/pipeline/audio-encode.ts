import { endianness } from 'node:os';
import type { OutputEncoding } from './audio-format.js';

export interface AudioEncoderOptions {
  readonly encoding: OutputEncoding;
  readonly sampleRate: number;
}

/** Turns mono float samples into the bytes of one output stream. */
export interface AudioEncoder {
  readonly encoding: OutputEncoding;
  readonly sampleRate: number;
  /**
   * Encodes the next samples. With WAV the first call's bytes start with the stream header, even
   * when there are no samples.
   */
  encode(samples: Float32Array): Uint8Array;
}

/** Length of the header written at the start of a WAV stream. */
export const WAV_HEADER_BYTES = 44;
/** The RIFF and data lengths of a stream whose length is not known when the header is sent. */
const UNKNOWN_LENGTH = 0xffffffff;

export function createAudioEncoder(options: AudioEncoderOptions): AudioEncoder {
  const { encoding, sampleRate } = options;
  if (!Number.isInteger(sampleRate) || sampleRate < 1) {
    throw new RangeError(`sample rate ${sampleRate} is not a positive integer`);
  }
  let headerSent = false;
  return {
    encoding,
    sampleRate,
    encode(samples) {
      if (encoding === 'float32') return encodeFloat32(samples);
      if (encoding === 'linear16' || headerSent) return encodeLinear16(samples, 0);
      headerSent = true;
      const bytes = encodeLinear16(samples, WAV_HEADER_BYTES);
      bytes.set(createStreamingWavHeader(sampleRate));
      return bytes;
    },
  };
}

/**
 * A 16-bit PCM mono WAV header for a stream of unknown length: the RIFF and data chunk lengths are
 * 0xFFFFFFFF, which ffmpeg, sox and browsers read as "until the end of the stream".
 */
export function createStreamingWavHeader(sampleRate: number): Uint8Array {
  const header = new Uint8Array(WAV_HEADER_BYTES);
  const view = new DataView(header.buffer);
  const ascii = (at: number, text: string) => {
    for (let i = 0; i < text.length; i++) header[at + i] = text.charCodeAt(i);
  };
  const channels = 1;
  const bytesPerSample = 2;
  ascii(0, 'RIFF');
  view.setUint32(4, UNKNOWN_LENGTH, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, channels, true);
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * channels * bytesPerSample, true);
  view.setUint16(32, channels * bytesPerSample, true);
  view.setUint16(34, bytesPerSample * 8, true);
  ascii(36, 'data');
  view.setUint32(40, UNKNOWN_LENGTH, true);
  return header;
}

/** s16le, clamped to [-1, 1] and rounded; NaN becomes 0. The inverse of the decoder's ÷ 32768. */
function encodeLinear16(samples: Float32Array, offset: number): Uint8Array {
  const bytes = new Uint8Array(offset + samples.length * 2);
  // Typed-array writes are native-endian: little-endian machines write the samples directly.
  if (LITTLE_ENDIAN) {
    const out = new Int16Array(bytes.buffer, offset, samples.length);
    for (let i = 0; i < samples.length; i++) out[i] = toInt16(samples[i] ?? 0);
    return bytes;
  }
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(offset + i * 2, toInt16(samples[i] ?? 0), true);
  return bytes;
}

function toInt16(sample: number): number {
  const scaled = Math.round(sample * 0x8000);
  return scaled > 0x7fff ? 0x7fff : scaled < -0x8000 ? -0x8000 : scaled || 0;
}

/** f32le, clamped to [-1, 1] as the contract promises (resampling can overshoot); NaN becomes 0. */
function encodeFloat32(samples: Float32Array): Uint8Array {
  const bytes = new Uint8Array(samples.length * 4);
  const clamp = (sample: number) => (sample > 1 ? 1 : sample < -1 ? -1 : sample || 0);
  if (LITTLE_ENDIAN) {
    const out = new Float32Array(bytes.buffer);
    for (let i = 0; i < samples.length; i++) out[i] = clamp(samples[i] ?? 0);
    return bytes;
  }
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) view.setFloat32(i * 4, clamp(samples[i] ?? 0), true);
  return bytes;
}

const LITTLE_ENDIAN = endianness() === 'LE';
