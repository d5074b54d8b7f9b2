/**
 * Whisper's log-mel features computed over the utterance instead of the full 30 s window, with the
 * same bits as @huggingface/transformers 4.3.1's `WhisperFeatureExtractor`.
 *
 * The library pads every input to `n_samples` (30 s) and runs the STFT and mel projection over all
 * `nb_max_frames` frames: ~130 ms whatever the input's length. A frame whose samples are all zero
 * has mel energy `mel_floor`, so after `log10_max_norm` every such frame is the same constant
 * `(max(log10(floor), logMax - 8) + 4) / 4`, where `logMax`, the maximum over all frames, is the
 * maximum over the frames that see audio and one silent frame. The library's own extractor, called
 * with `max_length = L` (its zero-padding target), therefore computes the first `L / hop_length`
 * frames exactly, provided that
 *
 * - its last frame lies entirely in zero padding. That frame reads samples
 *   `[L - hop - n_fft/2, L + n_fft/2 - hop)`, those past `L` reflected back from below `L`, so
 *   `L >= N + hop + n_fft/2` (N the input length) makes it silent: its column holds the constant,
 *   with the same `logMax` as the full window, and the rest of the window is filled from it;
 * - the mel projection rounds as it does over the full window. It is an onnxruntime MatMul
 *   ([feature_size, bins] x [bins, frames]); MLAS splits the frames among the session's intra-op
 *   threads in blocks of 16 and, in a slice of 64 columns or fewer, sums the 201 frequency bins in
 *   one pass instead of 128 + 73, which rounds differently (up to 1.2e-7 after the log). Over the
 *   full window every slice is wider than 64 while there are at most 37 threads; the short call's
 *   slices are too once it has `80 * threads - 15` frames. The library's op sessions use
 *   onnxruntime's default thread count, the number of physical cores, so the CPU count bounds it:
 *   145 frames (1.45 s) on 2 CPUs, 625 (6.25 s) on 8; from 38 CPUs on the short path is never taken.
 *
 * Inputs that need more frames than the window has take the library's path unchanged.
 */
import { availableParallelism, cpus } from 'node:os';
import { Tensor, WhisperFeatureExtractor } from '@huggingface/transformers';

type Audio = Float32Array | Float64Array;
type ExtractFeatures = (
  audio: Audio,
  options?: { max_length?: number | null },
) => Promise<{ input_features: Tensor }>;

/** MLAS SGEMM: columns are handed to threads in blocks of this many... */
const threadBlock = 16;
/** ...and a slice of at most this many columns sums the inner dimension in one pass. */
const narrowSlice = 64;

/**
 * Fewest frames for which every thread's slice of the mel MatMul is wider than `narrowSlice`:
 * at least `narrowSlice / threadBlock + 1` blocks per thread, the last block possibly one column.
 */
export function minimumExactFrames(threads: number): number {
  return (narrowSlice / threadBlock + 1) * threadBlock * threads - (threadBlock - 1);
}

const installed = new WeakSet<object>();

/**
 * Makes `extractor` (a Whisper pipeline's `processor.feature_extractor`) compute features over the
 * input's length, padded to the window with the silent-frame constant: the same `[1, feature_size,
 * nb_max_frames]` tensor, bit for bit, in a fraction of the time for short audio. Calls that pass
 * `max_length`, and inputs too long for a shorter computation, take the library's path. Installing
 * twice is a no-op. Anything other than a `WhisperFeatureExtractor` is a TypeError.
 */
export function useExactShortFeatures(extractor: unknown): void {
  if (!(extractor instanceof WhisperFeatureExtractor)) {
    const kind = (extractor as { constructor?: { name?: string } } | null)?.constructor?.name;
    throw new TypeError(`extractor: must be a WhisperFeatureExtractor, got ${kind ?? String(extractor)}`);
  }
  if (installed.has(extractor)) return;
  const config = extractor.config as Record<string, unknown>;
  const setting = (key: string) => {
    const value = config[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      throw new TypeError(`extractor.config.${key}: must be a positive integer, got ${String(value)}`);
    }
    return value;
  };
  const hop = setting('hop_length');
  const featureSize = setting('feature_size');
  // The frames the library keeps of the padded window: the output's width.
  const frames = Math.min(Math.floor(setting('n_samples') / hop), setting('nb_max_frames'));
  // Samples past the input up to where the last frame starts, plus one.
  const margin = hop + Math.floor(setting('n_fft') / 2) + 1;
  const fewestFrames = minimumExactFrames(Math.max(cpus().length, availableParallelism()));

  // Callable objects call `this._call`, so an own property replaces the method for this instance.
  const original: ExtractFeatures = extractor._call.bind(extractor);
  const short: ExtractFeatures = async (audio, options = {}) => {
    const computed = Math.max(Math.ceil((audio.length + margin) / hop), fewestFrames);
    if ((options.max_length ?? null) !== null || computed >= frames) return original(audio, options);

    const { input_features: part } = await original(audio, { max_length: computed * hop });
    if (part.dims.length !== 3 || part.dims[1] !== featureSize || part.dims[2] !== computed) {
      throw new RangeError(
        `short features: expected [1, ${featureSize}, ${computed}], got [${part.dims.join(', ')}]`,
      );
    }
    const data = part.data as Float32Array;
    const silent = data[computed - 1] as number;
    const features = new Float32Array(featureSize * frames);
    for (let bin = 0; bin < featureSize; bin++) {
      const row = bin * frames;
      features.set(data.subarray(bin * computed, (bin + 1) * computed), row);
      features.fill(silent, row + computed, row + frames);
    }
    return { input_features: new Tensor('float32', features, [1, featureSize, frames]) };
  };
  (extractor as unknown as { _call: ExtractFeatures })._call = short;
  installed.add(extractor);
}
