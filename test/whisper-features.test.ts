import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AutoFeatureExtractor,
  env,
  type FeatureExtractor,
  pipeline,
  type Tensor,
} from '@huggingface/transformers';
import { minimumExactFrames, useExactShortFeatures } from '../server/engines/whisper-features.js';
import { type GeneratedWhisperModel, generateWhisperModel } from './fixtures/whisper-model.js';
import { seededRandom } from './helpers/random.js';
import { RATE, speak } from './helpers/speech.js';

type Extract = (
  audio: Float32Array | Float64Array,
  options?: { max_length?: number },
) => Promise<{ input_features: Tensor }>;

interface AsrPipeline {
  (audio: Float32Array, options: Record<string, unknown>): Promise<unknown>;
  processor: { feature_extractor: FeatureExtractor };
}

const window = 30 * RATE;
const hop = 160;
/** Samples past the input the short computation pads with (hop + n_fft / 2 + 1). */
const margin = 361;

/** Syllable-like bursts: a gliding tone with harmonics and noise under an on/off envelope. */
function speechLike(length: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const audio = new Float32Array(Math.round(length));
  let phase = 0;
  for (let i = 0; i < audio.length; i++) {
    const t = i / RATE;
    const pitch = 110 + 60 * Math.sin(2 * Math.PI * 0.7 * t + seed);
    phase += (2 * Math.PI * pitch) / RATE;
    const envelope = 0.5 + 0.5 * Math.sin(2 * Math.PI * 3.1 * t + seed);
    const voiced = Math.sin(phase) + 0.5 * Math.sin(2 * phase) + 0.25 * Math.sin(3 * phase);
    audio[i] = envelope * (0.25 * voiced + 0.05 * (random() * 2 - 1));
  }
  return audio;
}

function noise(length: number, amplitude: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  return Float32Array.from({ length: Math.round(length) }, () => amplitude * (random() * 2 - 1));
}

/** Input lengths in samples for which the short computation has exactly `frames` frames, at most. */
const longestWithFrames = (frames: number) => frames * hop - margin;

function bytesOf(tensor: Tensor): Buffer {
  const data = tensor.data as Float32Array;
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

describe('exact short Whisper features', () => {
  let root: string;
  let model: GeneratedWhisperModel;
  let reference: Extract;
  let short: Extract;
  const floor = minimumExactFrames(Math.max(cpus().length, availableParallelism()));

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'whisper-features-'));
    model = await generateWhisperModel({ root });
    env.localModelPath = root;
    env.allowLocalModels = true;
    env.allowRemoteModels = false;
    const load = () => AutoFeatureExtractor.from_pretrained(model.modelId, { local_files_only: true });
    reference = (await load()) as unknown as Extract;
    const extractor = await load();
    useExactShortFeatures(extractor);
    short = extractor as unknown as Extract;
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function assertSame(audio: Float32Array | Float64Array, label: string) {
    const expected = (await reference(audio)).input_features;
    const actual = (await short(audio)).input_features;
    assert.deepEqual(actual.dims, [1, 80, 3000], label);
    assert.deepEqual(actual.dims, expected.dims, label);
    assert.equal(actual.type, 'float32', label);
    if (Buffer.compare(bytesOf(actual), bytesOf(expected)) !== 0) {
      const a = actual.data as Float32Array;
      const e = expected.data as Float32Array;
      const first = a.findIndex((value, i) => value !== e[i]);
      assert.fail(
        `${label}: features differ first at mel ${Math.floor(first / 3000)}, frame ${first % 3000}: ` +
          `${a[first]} instead of ${e[first]}`,
      );
    }
  }

  it('match the library bit for bit on speech-like audio of 0.01 s to 30 s', async () => {
    const lengths = new Set<number>([
      1,
      160,
      0.05 * RATE,
      0.1 * RATE,
      0.25 * RATE,
      0.5 * RATE,
      0.75 * RATE,
      RATE - 1,
      RATE,
      RATE + 1,
      1.5 * RATE,
      2 * RATE,
      3 * RATE,
      4 * RATE,
      5 * RATE,
      7.5 * RATE,
      10 * RATE,
      12 * RATE,
      15 * RATE,
      20 * RATE,
      25 * RATE,
      29 * RATE,
      // Where the frame floor stops applying, on this machine and on a 2-thread pool.
      longestWithFrames(floor) - 1,
      longestWithFrames(floor),
      longestWithFrames(floor) + 1,
      longestWithFrames(150),
      longestWithFrames(150) + 1,
      // Exact multiples of the hop, and one sample either side.
      hop * 1000 - 1,
      hop * 1000,
      hop * 1000 + 1,
      hop * 1234,
      // The last frame moves one frame on: N + margin crosses a multiple of the hop.
      longestWithFrames(1800),
      longestWithFrames(1800) + 1,
      // The longest input the short path takes, and the ones the library's path takes.
      longestWithFrames(2999),
      longestWithFrames(2999) + 1,
      window - hop,
      window - 1,
      window,
    ]);
    for (let i = 0; lengths.size < 60; i++) lengths.add(Math.floor(0.01 * RATE + i * 7919.37));
    let seed = 1;
    for (const length of [...lengths].sort((a, b) => a - b)) {
      await assertSame(speechLike(length, seed++), `speech-like, ${length} samples`);
    }
  });

  it('match the library on silence and near-silence, where the mel floor decides', async () => {
    for (const length of [1, 0.5 * RATE, 2 * RATE, longestWithFrames(floor) + 1, 10 * RATE, window - 1]) {
      await assertSame(new Float32Array(Math.round(length)), `silence, ${length} samples`);
    }
    for (const amplitude of [1e-6, 1e-9]) {
      for (const length of [0.3 * RATE, 1.2 * RATE, 3 * RATE, longestWithFrames(floor), 17 * RATE]) {
        await assertSame(noise(length, amplitude, length), `noise at ${amplitude}, ${length} samples`);
      }
    }
    // Speech whose last half second is silence but for one sample at 1e-9.
    const tail = speechLike(2 * RATE, 7);
    tail.fill(0, 1.5 * RATE);
    tail[tail.length - 1] = 1e-9;
    await assertSame(tail, 'speech, then silence, then one tiny sample');
  });

  it('match the library on real speech and on Float64Array input', async () => {
    const speech = speak('hello world, this is a test');
    await assertSame(speech, 'espeak-ng speech');
    await assertSame(Float64Array.from(speechLike(1.3 * RATE, 11)), 'Float64Array input');
  });

  it("leaves a call that sets max_length to the library's own path", async () => {
    const audio = speechLike(RATE, 3);
    const expected = (await reference(audio, { max_length: 2 * RATE })).input_features;
    const actual = (await short(audio, { max_length: 2 * RATE })).input_features;
    assert.deepEqual(actual.dims, [1, 80, 200]);
    assert.equal(Buffer.compare(bytesOf(actual), bytesOf(expected)), 0);
  });

  it('refuses an extractor that is not a WhisperFeatureExtractor', () => {
    assert.throws(() => useExactShortFeatures({}), TypeError);
    assert.throws(() => useExactShortFeatures(null), TypeError);
  });

  it('gives the pipeline the same transcript and word timestamps, from shorter computations', async () => {
    const pipe = (await pipeline('automatic-speech-recognition', model.modelId, {
      local_files_only: true,
      dtype: 'fp32',
    })) as unknown as AsrPipeline;
    const options = { language: 'en', task: 'transcribe', return_timestamps: 'word' };
    const audio = [speak('hello world'), speechLike(3 * RATE, 5)];
    const full = [];
    for (const clip of audio) full.push(await pipe(clip, options));

    const extractor = pipe.processor.feature_extractor as FeatureExtractor & {
      _extract_fbank_features(waveform: Float32Array): Promise<Tensor>;
    };
    useExactShortFeatures(extractor);
    const computed: number[] = [];
    const extract = extractor._extract_fbank_features.bind(extractor);
    extractor._extract_fbank_features = (waveform) => {
      computed.push(waveform.length);
      return extract(waveform);
    };
    const shortened = [];
    for (const clip of audio) shortened.push(await pipe(clip, options));

    assert.deepEqual(shortened, full);
    assert.match(JSON.stringify(shortened[0]), new RegExp(model.text));
    assert.equal(computed.length, audio.length);
    for (const length of computed) assert.ok(length < window, `computed ${length} samples`);
  });
});
