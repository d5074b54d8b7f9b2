import libsamplerate from '@alexanderolsen/libsamplerate-js';
import { concatSamples } from './samples.js';

/**
 * libsamplerate's band-limited sinc converters. Cost per second of 48 kHz → 16 kHz mono on this
 * project's reference machine: fastest ≈ 6 ms (flat to 5.5 kHz, −3 dB at 6.4 kHz, ≈100 dB
 * stop band), medium ≈ 13 ms (flat to 6.8 kHz), best ≈ 66 ms. Recognition does not need more than
 * `fastest`; it is the default.
 */
export type ResampleQuality = 'fastest' | 'medium' | 'best';

/** A streaming mono resampler. The output of all pushes plus flush() is round(input × ratio) long. */
export interface Resampler {
  readonly inRate: number;
  readonly outRate: number;
  /**
   * Resamples the next samples. The converter holds back a few output samples (its filter needs
   * look-ahead), so early pushes return slightly fewer than input × ratio; timing is not shifted.
   * With equal rates the input array itself is returned.
   */
  push(samples: Float32Array): Float32Array;
  /** Ends the stream: returns the held-back samples. No push may follow. */
  flush(): Float32Array;
  /** Releases the converter. Idempotent. */
  close(): void;
}

export interface ResamplerOptions {
  readonly quality?: ResampleQuality;
}

type Src = Awaited<ReturnType<typeof libsamplerate.create>>;

const CONVERTER = {
  fastest: libsamplerate.ConverterType.SRC_SINC_FASTEST,
  medium: libsamplerate.ConverterType.SRC_SINC_MEDIUM_QUALITY,
  best: libsamplerate.ConverterType.SRC_SINC_BEST_QUALITY,
} as const;

/** Floats in the library's fixed WASM transfer buffers (input and output each). */
const TRANSFER_FLOATS = 1_008_000;
const MAX_RATE = 192_000;
const NO_SAMPLES = new Float32Array(0);

/**
 * Each library instance is a separate WASM module (≈10 ms to instantiate, 26 MB of reserved
 * memory) holding one converter, so closed ones are kept for reuse. Setting a rate re-creates the
 * converter state (src_delete + src_new), which is what makes a reused instance start clean.
 */
const idle: Src[] = [];
const MAX_IDLE = 4;

export async function createResampler(
  inRate: number,
  outRate: number,
  options: ResamplerOptions = {},
): Promise<Resampler> {
  for (const rate of [inRate, outRate]) {
    if (!Number.isInteger(rate) || rate < 1 || rate > MAX_RATE) {
      throw new RangeError(`sample rate ${rate} is not an integer from 1 to ${MAX_RATE}`);
    }
  }
  if (inRate === outRate) return passThrough(inRate);

  const ratio = outRate / inRate;
  const converterType = CONVERTER[options.quality ?? 'fastest'];
  const src = await acquire(inRate, outRate, converterType);
  // Keeps each call inside the transfer buffers; larger inputs would be split by the library anyway.
  const maxPiece = Math.floor(TRANSFER_FLOATS / Math.max(1, Math.ceil(ratio)) / 2);
  let inTotal = 0;
  let outTotal = 0;
  let state: 'open' | 'flushed' | 'closed' = 'open';

  function convert(samples: Float32Array): Float32Array {
    if (samples.length <= maxPiece) return src.full(samples);
    const parts: Float32Array[] = [];
    for (let at = 0; at < samples.length; at += maxPiece) {
      parts.push(src.full(samples.subarray(at, at + maxPiece)));
    }
    return concatSamples(parts);
  }

  return {
    inRate,
    outRate,
    push(samples) {
      if (state !== 'open') throw new Error(`push() on a ${state} resampler`);
      if (samples.length === 0) return NO_SAMPLES;
      inTotal += samples.length;
      const out = convert(samples);
      outTotal += out.length;
      return out;
    },
    flush() {
      if (state !== 'open') throw new Error(`flush() on a ${state} resampler`);
      state = 'flushed';
      // The library never signals end of input to libsamplerate, so silence pushes the held-back
      // samples out; the result is cut to the length the input calls for.
      let missing = Math.round(inTotal * ratio) - outTotal;
      const parts: Float32Array[] = [];
      for (let round = 0; missing > 0 && round < 8; round++) {
        const out = src.full(new Float32Array(Math.ceil(missing / ratio) + 64));
        const kept = out.subarray(0, Math.min(out.length, missing));
        parts.push(kept);
        missing -= kept.length;
      }
      const tail = concatSamples(parts);
      outTotal += tail.length;
      return tail;
    },
    close() {
      if (state === 'closed') return;
      state = 'closed';
      release(src);
    },
  };
}

function passThrough(rate: number): Resampler {
  let state: 'open' | 'flushed' | 'closed' = 'open';
  return {
    inRate: rate,
    outRate: rate,
    push(samples) {
      if (state !== 'open') throw new Error(`push() on a ${state} resampler`);
      return samples;
    },
    flush() {
      if (state !== 'open') throw new Error(`flush() on a ${state} resampler`);
      state = 'flushed';
      return NO_SAMPLES;
    },
    close() {
      state = 'closed';
    },
  };
}

async function acquire(
  inRate: number,
  outRate: number,
  converterType: (typeof CONVERTER)[ResampleQuality],
): Promise<Src> {
  const src = idle.pop();
  if (src === undefined) return libsamplerate.create(1, inRate, outRate, { converterType });
  src.converterType = converterType;
  src.inputSampleRate = inRate;
  src.outputSampleRate = outRate;
  src.ratio = outRate / inRate;
  return src;
}

function release(src: Src): void {
  if (idle.length < MAX_IDLE) idle.push(src);
  else src.destroy();
}
