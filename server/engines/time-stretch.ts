/**
 * Changes the duration of speech without changing its pitch, for voices whose engine has no speed
 * parameter (VITS). WSOLA from @soundtouchjs/core (a port of SoundTouch's TDStretch): the audio is
 * cut into ~100 ms windows, and each next window is taken from where it best lines up with the end
 * of the previous one, then cross-faded over 8 ms.
 *
 * CPU work (5–15 ms per second of 16 kHz input, more at higher rates): run it in a model worker,
 * not on the main thread.
 */
import { FifoSampleBuffer, Stretch } from '@soundtouchjs/core';
import { invalidArgument } from '../errors.js';

export const MIN_SPEED = 0.5;
export const MAX_SPEED = 2.0;

/** Frames fed to the stretcher at a time, so its buffers stay small whatever the input length. */
const CHUNK_FRAMES = 8192;

/**
 * `samples` (mono) played `speed` times faster: the result has round(length / speed) samples at the
 * same pitch. Speed 1 returns `samples` itself.
 */
export function timeStretch(samples: Float32Array, sampleRate: number, speed: number): Float32Array {
  if (!Number.isFinite(speed) || speed < MIN_SPEED || speed > MAX_SPEED) {
    throw invalidArgument('speed', `must be between ${MIN_SPEED} and ${MAX_SPEED}, got ${speed}`);
  }
  if (!Number.isInteger(sampleRate) || sampleRate <= 0) {
    throw invalidArgument('sampleRate', `must be a positive integer, got ${sampleRate}`);
  }
  if (speed === 1 || samples.length === 0) return samples;

  const wanted = Math.round(samples.length / speed);
  const output = new Float32Array(wanted);
  const stretch = new Stretch({
    sampleRate,
    createBuffers: true,
    sampleBufferFactory: () => new FifoSampleBuffer(),
  });
  stretch.tempo = speed;
  // The exhaustive overlap search: ~8 ms per second of output at 16 kHz against ~1 ms for the quick
  // one, still nothing beside VITS inference, and no badly placed windows.
  stretch.setStretchParameters({ quickSeek: false });
  const input = stretch.inputBuffer;
  const out = stretch.outputBuffer;
  if (input === null || out === null) throw new Error('soundtouch Stretch created no buffers');

  // Output sample k of a window copies input sample start + k, where the window's start lies one
  // overlap plus its search offset (0 to the seek length) past its nominal place. So output runs
  // ahead of input by `bias` on average (~45 ms at speed 0.5, ~-25 ms at 2). Leading silence,
  // whose stretched length plus the bias is then dropped, centres the output on the input and
  // keeps the first real samples from being skipped.
  const rate = sampleRate / 1000;
  const overlap = stretch.overlapLength;
  const sequence = Math.floor(rate * stretch.sequenceMs);
  const bias = overlap + (rate * stretch.seekWindowMs) / 2 + ((sequence - overlap) / 2) * (1 - speed);
  const lead = stretch.inputChunkSize;
  let skip = Math.max(0, Math.round((lead - bias) / speed));

  // The stretcher works on interleaved stereo: both channels carry the mono signal.
  const stereo = new Float32Array(CHUNK_FRAMES * 2);
  const drained = new Float32Array(CHUNK_FRAMES * 2);
  let written = 0;
  const drain = () => {
    if (skip > 0) {
      const dropped = Math.min(skip, out.frameCount);
      out.receive(dropped);
      skip -= dropped;
    }
    while (out.frameCount > 0 && written < wanted) {
      const frames = Math.min(out.frameCount, CHUNK_FRAMES, wanted - written);
      out.extract(drained, 0, frames);
      out.receive(frames);
      for (let i = 0; i < frames; i++) output[written + i] = drained[2 * i] ?? 0;
      written += frames;
    }
    out.receive();
  };

  // Trailing silence pushes the last windows through (WSOLA processes whole windows only); the
  // output is then cut to the exact length.
  const tail = stretch.inputChunkSize * 2 + overlap;
  const total = lead + samples.length + tail;
  for (let start = 0; start < total && written < wanted; start += CHUNK_FRAMES) {
    const frames = Math.min(CHUNK_FRAMES, total - start);
    for (let i = 0; i < frames; i++) {
      const at = start + i - lead;
      const value = at >= 0 && at < samples.length ? (samples[at] ?? 0) : 0;
      stereo[2 * i] = value;
      stereo[2 * i + 1] = value;
    }
    input.putSamples(stereo, 0, frames);
    stretch.process();
    drain();
  }
  return output;
}
