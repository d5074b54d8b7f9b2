import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import wavefile from 'wavefile';
import { timeStretch } from '../server/engines/time-stretch.js';
import { Reason, VoiceError } from '../server/errors.js';
import type { EngineJobs, EngineReport, EngineWorkerData } from '../server/workers/messages.js';
import { createWorkerPool, type WorkerPool } from '../server/workers/pool.js';
import { createRemoteEngines, type RemoteSynthesizer } from '../server/workers/remote-engines.js';
import { generateVitsModel } from './fixtures/vits-model.js';

const never = new AbortController().signal;

function sine(hz: number, seconds: number, sampleRate: number, amplitude = 0.5): Float32Array {
  return Float32Array.from(
    { length: Math.round(seconds * sampleRate) },
    (_, i) => amplitude * Math.sin((2 * Math.PI * hz * i) / sampleRate),
  );
}

function rms(samples: Float32Array): number {
  let sum = 0;
  for (const value of samples) sum += value * value;
  return Math.sqrt(sum / Math.max(1, samples.length));
}

/** Frequency of a steady tone from its rising zero crossings, interpolated between samples. */
function toneFrequency(samples: Float32Array, sampleRate: number): number {
  const crossings: number[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1] ?? 0;
    const b = samples[i] ?? 0;
    if (a < 0 && b >= 0) crossings.push(i - 1 + a / (a - b));
  }
  const first = crossings[0] ?? 0;
  const last = crossings.at(-1) ?? 0;
  return ((crossings.length - 1) * sampleRate) / (last - first);
}

/** The middle of a signal, leaving out `fraction` at each end. */
function middle(samples: Float32Array, fraction = 0.1): Float32Array {
  const cut = Math.round(samples.length * fraction);
  return samples.subarray(cut, samples.length - cut);
}

/** Number of 10 ms frames louder than `threshold` RMS. */
function loudFrames(samples: Float32Array, sampleRate: number, threshold: number): number {
  const frame = Math.round(sampleRate / 100);
  let count = 0;
  for (let start = 0; start + frame <= samples.length; start += frame) {
    if (rms(samples.subarray(start, start + frame)) > threshold) count++;
  }
  return count;
}

/** Median pitch of the voiced 40 ms frames, by autocorrelation over 70–400 Hz. */
function medianPitch(samples: Float32Array, sampleRate: number): number {
  const frame = Math.round(sampleRate * 0.04);
  const minLag = Math.floor(sampleRate / 400);
  const maxLag = Math.ceil(sampleRate / 70);
  const loud = 0.3 * Math.max(...frameLevels(samples, frame));
  const pitches: number[] = [];
  for (let start = 0; start + frame + maxLag <= samples.length; start += frame) {
    const x = samples.subarray(start, start + frame);
    if (rms(x) < loud) continue;
    let energy = 0;
    for (const value of x) energy += value * value;
    let bestLag = 0;
    let best = 0;
    for (let lag = minLag; lag <= maxLag; lag++) {
      let dot = 0;
      let shiftedEnergy = 0;
      for (let i = 0; i < frame; i++) {
        const y = samples[start + i + lag] ?? 0;
        dot += (x[i] ?? 0) * y;
        shiftedEnergy += y * y;
      }
      const correlation = dot / Math.sqrt(energy * shiftedEnergy + 1e-12);
      if (correlation > best) {
        best = correlation;
        bestLag = lag;
      }
    }
    if (best > 0.7) pitches.push(sampleRate / bestLag);
  }
  pitches.sort((a, b) => a - b);
  return pitches[Math.floor(pitches.length / 2)] ?? Number.NaN;
}

function frameLevels(samples: Float32Array, frame: number): number[] {
  const levels: number[] = [];
  for (let start = 0; start + frame <= samples.length; start += frame) {
    levels.push(rms(samples.subarray(start, start + frame)));
  }
  return levels;
}

/** espeak-ng (Debian binary) speech at its own rate (22050 Hz), as floats. */
async function speak(text: string, dir: string): Promise<{ samples: Float32Array; sampleRate: number }> {
  const path = join(dir, `speech-${Date.now()}.wav`);
  execFileSync('espeak-ng', ['-v', 'en-us', '-w', path, text]);
  const wav = new wavefile.WaveFile(await readFile(path));
  const { sampleRate } = wav.fmt as { sampleRate: number };
  const ints = wav.getSamples(false, Float64Array) as unknown as Float64Array;
  return { samples: Float32Array.from(ints, (s) => s / 32768), sampleRate };
}

describe('timeStretch', () => {
  const rate = 16_000;
  const tone = sine(440, 2, rate);

  for (const speed of [2.0, 1.5, 0.75, 0.5]) {
    test(`speed ${speed} makes a 440 Hz tone ${speed > 1 ? 'shorter' : 'longer'} at the same pitch and level`, () => {
      const out = timeStretch(tone, rate, speed);
      const expected = tone.length / speed;
      assert.ok(
        Math.abs(out.length - expected) <= 0.05 * expected,
        `${out.length} samples, expected ~${expected}`,
      );
      const hz = toneFrequency(middle(out), rate);
      assert.ok(Math.abs(hz - 440) <= 0.03 * 440, `dominant frequency ${hz.toFixed(1)} Hz, expected 440`);
      const level = rms(middle(out));
      assert.ok(Math.abs(level - rms(tone)) <= 0.2 * rms(tone), `RMS ${level}, input ${rms(tone)}`);
    });
  }

  test('speed 1 returns the samples unchanged', () => {
    const out = timeStretch(tone, rate, 1);
    assert.equal(out.length, tone.length);
    assert.deepEqual(out, tone);
  });

  test('a tone burst starts where its start lands at the new speed', () => {
    // 200 Hz from 0.5 s to 1.5 s of 2 s of silence: at speed s it must start near 0.5 / s seconds.
    const burst = Float32Array.from({ length: 2 * rate }, (_, i) =>
      i >= 0.5 * rate && i < 1.5 * rate ? 0.5 * Math.sin((2 * Math.PI * 200 * i) / rate) : 0,
    );
    for (const speed of [0.5, 1.25, 2]) {
      const out = timeStretch(burst, rate, speed);
      const onset = out.findIndex((value) => Math.abs(value) > 0.05) / rate;
      assert.ok(
        Math.abs(onset - 0.5 / speed) < 0.03,
        `speed ${speed}: onset at ${onset} s, expected ${0.5 / speed} s`,
      );
    }
  });

  test('short and empty inputs give the stretched length', () => {
    assert.equal(timeStretch(new Float32Array(0), rate, 2).length, 0);
    const short = sine(300, 0.01, rate);
    assert.equal(timeStretch(short, rate, 0.5).length, short.length * 2);
    assert.equal(timeStretch(short, rate, 2).length, short.length / 2);
  });

  test('a speed outside 0.5–2.0 is an invalid argument naming the field', () => {
    for (const speed of [0, 0.49, 2.01, Number.NaN]) {
      assert.throws(
        () => timeStretch(tone, rate, speed),
        (error: unknown) =>
          error instanceof VoiceError &&
          error.reason === Reason.InvalidArgument &&
          error.rawMessage.startsWith('speed:'),
      );
    }
  });

  describe('on real speech (espeak-ng)', () => {
    let dir: string;
    let speech: { samples: Float32Array; sampleRate: number };

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'time-stretch-'));
      speech = await speak(
        'The quick brown fox jumps over the lazy dog, then runs away into the woods.',
        dir,
      );
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    test('speed 1.5 keeps the speech and its pitch, in two thirds of the time', () => {
      const { samples, sampleRate } = speech;
      const out = timeStretch(samples, sampleRate, 1.5);
      assert.equal(out.length, Math.round(samples.length / 1.5));
      const threshold = 0.1 * rms(samples);
      const before = loudFrames(samples, sampleRate, threshold);
      const afterStretch = loudFrames(out, sampleRate, threshold);
      const expected = before / 1.5;
      assert.ok(
        Math.abs(afterStretch - expected) <= 0.2 * expected,
        `${afterStretch} loud 10 ms frames, expected ~${expected.toFixed(0)} (input had ${before})`,
      );
      const pitchIn = medianPitch(samples, sampleRate);
      const pitchOut = medianPitch(out, sampleRate);
      assert.ok(
        Math.abs(pitchOut - pitchIn) <= 0.05 * pitchIn,
        `median pitch ${pitchOut.toFixed(1)} Hz, input ${pitchIn.toFixed(1)} Hz`,
      );
    });

    test('cost per second of audio', (t) => {
      const { samples, sampleRate } = speech;
      const seconds = samples.length / sampleRate;
      for (const speed of [0.5, 1.5, 2]) {
        timeStretch(samples, sampleRate, speed);
        const runs = 5;
        const started = performance.now();
        for (let i = 0; i < runs; i++) timeStretch(samples, sampleRate, speed);
        const msPerSecond = (performance.now() - started) / runs / seconds;
        t.diagnostic(
          `speed ${speed} at ${sampleRate} Hz: ${msPerSecond.toFixed(2)} ms per second of input speech`,
        );
        // Far faster than real time even on a busy machine; a regression to per-sample work would not be.
        assert.ok(msPerSecond < 100, `${msPerSecond} ms per second of audio`);
      }
    });
  });
});

describe('VITS voices through the model worker pool', () => {
  let dir: string;
  let pool: WorkerPool<EngineJobs, EngineReport>;
  let synthesizer: RemoteSynthesizer;
  let voice: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'time-stretch-vits-'));
    const model = await generateVitsModel({ root: dir });
    voice = `vits:${model.modelId}`;
    pool = createWorkerPool<EngineJobs, EngineReport>({
      name: 'inference',
      size: 1,
      workerData: {
        tts: {
          espeak: false,
          defaultVoice: voice,
          neural: {
            cacheDir: dir,
            allowRemote: false,
            models: [{ id: model.modelId, language: 'en' }],
            threads: 1,
          },
        },
      } satisfies EngineWorkerData,
      queueSize: 10,
    });
    const report = await pool.start();
    const engines = createRemoteEngines({
      vad: { pool, report: {} },
      inference: { pool, report },
    });
    assert.ok(engines.synthesizer, engines.unavailable.synthesizer);
    synthesizer = engines.synthesizer;
  });

  after(async () => {
    await pool?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('speed 2.0 returns half the samples of speed 1.0, stretched in the worker', async () => {
    const text = 'speech at twice the speed';
    const normal = await synthesizer.synthesize(text, { voice, speed: 1, signal: never });
    const fast = await synthesizer.synthesize(text, { voice, speed: 2, signal: never });
    const slow = await synthesizer.synthesize(text, { voice, speed: 0.5, signal: never });
    // The fixture voice speaks 320 samples per token, 2 tokens per character plus one.
    assert.equal(normal.samples.length, (2 * text.length + 1) * 320);
    assert.equal(normal.speedApplied, true);
    assert.equal(fast.speedApplied, true);
    assert.equal(slow.speedApplied, true);
    assert.equal(fast.sampleRate, normal.sampleRate);
    assert.ok(
      Math.abs(fast.samples.length - normal.samples.length / 2) <= 0.05 * (normal.samples.length / 2),
    );
    assert.ok(
      Math.abs(slow.samples.length - normal.samples.length * 2) <= 0.05 * (normal.samples.length * 2),
    );
    assert.ok(rms(fast.samples) > 0.5 * rms(normal.samples), 'the stretched audio is not silent');
  });

  test('an out-of-range speed for a VITS voice is an invalid argument', async () => {
    await assert.rejects(
      synthesizer.synthesize('too fast', { voice, speed: 3, signal: never }),
      (error: unknown) => error instanceof VoiceError && error.reason === Reason.InvalidArgument,
    );
  });
});
