import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import libsamplerate from '@alexanderolsen/libsamplerate-js';
import { createAudioDecoder, decodeAudio } from '../server/pipeline/audio-decode.js';
import { createResampler, type ResampleQuality } from '../server/pipeline/resample.js';
import { seededRandom } from './helpers/random.js';
import { concat } from './helpers/speech.js';

function tone(frequency: number, rate: number, length: number, amplitude = 0.5): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = amplitude * Math.sin((2 * Math.PI * frequency * i) / rate);
  return out;
}

/** Amplitude of one frequency (Goertzel); exact for a whole number of cycles in the window. */
function amplitudeAt(samples: Float32Array, frequency: number, rate: number): number {
  const coefficient = 2 * Math.cos((2 * Math.PI * frequency) / rate);
  let s1 = 0;
  let s2 = 0;
  for (const x of samples) {
    const s = x + coefficient * s1 - s2;
    s2 = s1;
    s1 = s;
  }
  const power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
  return (2 * Math.sqrt(Math.max(0, power))) / samples.length;
}

function zeroCrossings(samples: Float32Array): number {
  let count = 0;
  for (let i = 1; i < samples.length; i++) {
    if ((samples[i - 1] ?? 0) < 0 !== (samples[i] ?? 0) < 0) count++;
  }
  return count;
}

/** Resamples in chunks of `chunk(i)` samples, then flushes; returns the whole output. */
async function resampleAll(
  input: Float32Array,
  inRate: number,
  outRate: number,
  chunk: (i: number) => number = () => input.length,
  quality?: ResampleQuality,
): Promise<Float32Array> {
  const resampler = await createResampler(inRate, outRate, quality === undefined ? {} : { quality });
  const parts: Float32Array[] = [];
  for (let at = 0, i = 0; at < input.length; i++) {
    const size = Math.max(1, chunk(i));
    parts.push(resampler.push(input.subarray(at, at + size)));
    at += size;
  }
  parts.push(resampler.flush());
  resampler.close();
  return concat(...parts);
}

/** A resampler without an anti-aliasing filter, to show what the tests would catch. */
function linearInterpolate(input: Float32Array, inRate: number, outRate: number): Float32Array {
  const out = new Float32Array(Math.floor((input.length * outRate) / inRate));
  for (let i = 0; i < out.length; i++) {
    const position = (i * inRate) / outRate;
    const k = Math.floor(position);
    const t = position - k;
    out[i] = (input[k] ?? 0) * (1 - t) + (input[k + 1] ?? 0) * t;
  }
  return out;
}

const dB = (ratio: number) => 20 * Math.log10(ratio);

describe('createResampler', () => {
  test('equal rates pass samples through unchanged', async () => {
    const resampler = await createResampler(16000, 16000);
    const input = tone(440, 16000, 1000);
    assert.equal(resampler.push(input), input);
    assert.equal(resampler.flush().length, 0);
    resampler.close();
  });

  test('a 1 kHz tone at 48 kHz keeps its frequency and amplitude at 16 kHz', async () => {
    const output = await resampleAll(tone(1000, 48000, 96000), 48000, 16000, () => 960);
    assert.equal(output.length, 32000);
    // 14000 samples at 16 kHz hold exactly 875 cycles of 1 kHz.
    const window = output.subarray(1000, 15000);
    assert.ok(Math.abs(amplitudeAt(window, 1000, 16000) - 0.5) < 0.005);
    assert.ok(Math.abs(zeroCrossings(window) - 1750) <= 2, `${zeroCrossings(window)} crossings`);
    assert.ok(amplitudeAt(window, 1200, 16000) < 0.005, 'energy away from 1 kHz');
  });

  test('an 11 kHz tone at 44.1 kHz is removed, not aliased to 5 kHz, at 16 kHz', async () => {
    const input = tone(11000, 44100, 44100);
    const output = await resampleAll(input, 44100, 16000, () => 441);
    const window = output.subarray(1000, 15000);
    const alias = amplitudeAt(window, 5000, 16000);
    assert.ok(dB(alias / 0.5) < -80, `alias at 5 kHz is ${dB(alias / 0.5).toFixed(1)} dB`);
    // The same measurement catches a resampler without an anti-aliasing filter.
    const naive = linearInterpolate(input, 44100, 16000).subarray(1000, 15000);
    assert.ok(amplitudeAt(naive, 5000, 16000) > 0.05, 'the naive resampler aliases');
  });

  test('a 9 kHz tone at 22.05 kHz is removed at 16 kHz; 5 kHz passes', async () => {
    const stopped = await resampleAll(tone(9000, 22050, 22050), 22050, 16000, () => 441);
    assert.ok(dB(amplitudeAt(stopped.subarray(1000, 15000), 7000, 16000) / 0.5) < -80);
    const passed = await resampleAll(tone(5000, 22050, 22050), 22050, 16000, () => 441);
    assert.ok(Math.abs(dB(amplitudeAt(passed.subarray(1000, 15000), 5000, 16000) / 0.5)) < 0.5);
  });

  test('medium quality keeps 7 kHz at 16 kHz; fastest rolls it off', async () => {
    const input = tone(7000, 22050, 22050);
    const medium = await resampleAll(input, 22050, 16000, undefined, 'medium');
    assert.ok(Math.abs(dB(amplitudeAt(medium.subarray(1000, 15000), 7000, 16000) / 0.5)) < 0.5);
    const fastest = await resampleAll(input, 22050, 16000, undefined, 'fastest');
    assert.ok(dB(amplitudeAt(fastest.subarray(1000, 15000), 7000, 16000) / 0.5) < -6);
  });

  test('chunked output equals whole-buffer output and libsamplerate end-of-input output', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'resample-'));
    try {
      const path = join(dir, 'speech.wav');
      execFileSync('espeak-ng', ['-w', path, 'Chunked and whole resampling agree.']);
      const speech = decodeAudio({ encoding: 'wav' }, new Uint8Array(readFileSync(path)));
      assert.equal(speech.sampleRate, 22050);
      const whole = await resampleAll(speech.samples, 22050, 16000);
      const next = seededRandom(3);
      for (const [name, chunk] of [
        ['1 sample', () => 1],
        ['7 samples', () => 7],
        ['random up to 3000', () => Math.floor(next() * 3000)],
      ] as const) {
        const chunked = await resampleAll(speech.samples, 22050, 16000, chunk);
        assert.equal(chunked.length, whole.length, name);
        let worst = 0;
        for (let i = 0; i < whole.length; i++) {
          worst = Math.max(worst, Math.abs((chunked[i] ?? 0) - (whole[i] ?? 0)));
        }
        assert.ok(worst < 1e-6, `${name}: differs by ${worst}`);
      }
      // libsamplerate's one-shot API flushes with a real end-of-input flag.
      const src = await libsamplerate.create(1, 22050, 16000, {
        converterType: libsamplerate.ConverterType.SRC_SINC_FASTEST,
      });
      const reference = src.simple(speech.samples);
      src.destroy();
      assert.ok(Math.abs(reference.length - whole.length) <= 1);
      for (let i = 0; i < Math.min(reference.length, whole.length); i++) {
        assert.ok(Math.abs((reference[i] ?? 0) - (whole[i] ?? 0)) < 1e-6, `sample ${i}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the output is round(input × ratio) long and does not drift', async (t) => {
    const pairs = [
      [48000, 16000],
      [44100, 16000],
      [22050, 16000],
      [8000, 16000],
      [16000, 22050],
      [22050, 48000],
    ] as const;
    for (const [inRate, outRate] of pairs) {
      for (const length of [1, 100, 4410, 123457]) {
        const output = await resampleAll(new Float32Array(length), inRate, outRate, () => 1000);
        assert.equal(
          output.length,
          Math.round((length * outRate) / inRate),
          `${inRate}→${outRate} × ${length}`,
        );
      }
      // An impulse lands where the ratio puts it, late in a long chunked stream.
      const input = new Float32Array(inRate * 5);
      const at = inRate * 4 + 123;
      input[at] = 1;
      const output = await resampleAll(input, inRate, outRate, () => 317);
      let peak = 0;
      for (let i = 0; i < output.length; i++) {
        if (Math.abs(output[i] ?? 0) > Math.abs(output[peak] ?? 0)) peak = i;
      }
      assert.ok(Math.abs(peak - (at * outRate) / inRate) <= 1, `${inRate}→${outRate}: peak at ${peak}`);
      // Held back until flush: the converter's look-ahead, in output samples.
      const resampler = await createResampler(inRate, outRate);
      const pushed = resampler.push(new Float32Array(inRate)).length;
      resampler.close();
      const held = outRate - pushed;
      t.diagnostic(
        `${inRate}→${outRate}: ${held} output samples held back (${((held / outRate) * 1000).toFixed(2)} ms)`,
      );
      assert.ok(held >= 0 && held < outRate / 100);
    }
  });

  test('a reused converter starts from a clean state', async () => {
    const next = seededRandom(5);
    const noise = new Float32Array(4800).map(() => next() - 0.5);
    const first = await createResampler(48000, 16000);
    first.push(noise);
    first.close();
    const reused = await createResampler(44100, 16000);
    const fresh = await createResampler(44100, 16000);
    const input = tone(300, 44100, 4410);
    const a = concat(...[reused.push(input), reused.flush()]);
    const b = concat(...[fresh.push(input), fresh.flush()]);
    reused.close();
    fresh.close();
    assert.deepEqual(a, b);
  });

  test('push after flush or close is a programming error', async () => {
    const resampler = await createResampler(48000, 16000);
    resampler.flush();
    assert.throws(() => resampler.push(new Float32Array(10)), /flushed/);
    resampler.close();
    resampler.close();
    assert.throws(() => resampler.push(new Float32Array(10)), /closed/);
  });

  test('decoding and resampling a live stream costs well under 1% of a core', async (t) => {
    const seconds = 20;
    const rate = 48000;
    const pcm = new Uint8Array(rate * seconds * 2);
    const view = new DataView(pcm.buffer);
    const source = tone(440, rate, rate * seconds, 0.3);
    for (let i = 0; i < source.length; i++) view.setInt16(i * 2, Math.round((source[i] ?? 0) * 32767), true);
    const chunkBytes = rate * 0.02 * 2; // 20 ms chunks, as a live client sends them
    // Warm up, then measure.
    for (const measured of [false, true]) {
      const decoder = createAudioDecoder({ encoding: 'linear16', sampleRate: rate, channels: 1 });
      const resampler = await createResampler(rate, 16000);
      const started = process.cpuUsage();
      for (let at = 0; at < pcm.length; at += chunkBytes) {
        resampler.push(decoder.push(pcm.subarray(at, at + chunkBytes)));
      }
      resampler.push(decoder.end());
      resampler.flush();
      const used = process.cpuUsage(started);
      resampler.close();
      if (!measured) continue;
      const msPerSecond = (used.user + used.system) / 1000 / seconds;
      t.diagnostic(`48 kHz LINEAR16 → 16 kHz: ${msPerSecond.toFixed(2)} ms CPU per second of audio`);
      // Generous bound: the machine is shared; a regression to a slow path would pass 2%.
      assert.ok(msPerSecond < 20, `${msPerSecond} ms per second of audio`);
    }
  });
});
