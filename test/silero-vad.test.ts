import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import wavefile from 'wavefile';
import { createSileroVad, type SileroVad } from '../server/engines/silero-vad.js';
import { Reason, VoiceError } from '../server/errors.js';
import { createUtteranceSegmenter, type UtteranceEvent } from '../server/pipeline/utterance-segmenter.js';

const FRAME = 512;
const workDir = mkdtempSync(join(tmpdir(), 'silero-vad-test-'));
let clipCount = 0;

/** espeak-ng speech as 16 kHz floats. */
function speak(voice: string, text: string): Float32Array {
  clipCount += 1;
  const path = join(workDir, `clip-${clipCount}.wav`);
  execFileSync('espeak-ng', ['-v', voice, '-w', path, text]);
  const wav = new wavefile.WaveFile(readFileSync(path));
  wav.toSampleRate(16_000);
  return Float32Array.from(wav.getSamples(false, Float64Array) as unknown as Float64Array, (s) => s / 32768);
}

/** First and last sample of a clip whose 5 ms energy is above -40 dBFS: where the speech really is. */
function speechSpan(clip: Float32Array): [number, number] {
  const window = 80;
  let first = -1;
  let last = -1;
  for (let a = 0; a + window <= clip.length; a += window) {
    let energy = 0;
    for (let k = a; k < a + window; k++) energy += (clip[k] ?? 0) ** 2;
    if (Math.sqrt(energy / window) > 0.01) {
      if (first < 0) first = a;
      last = a + window;
    }
  }
  return [first, last];
}

/** Clips joined by silences of the given lengths, with low white noise everywhere; truth in samples. */
function compose(clips: Float32Array[], gapsMs: number[], noiseRms: number) {
  const truth: Array<[number, number]> = [];
  const parts: Float32Array[] = [];
  let position = 0;
  clips.forEach((clip, i) => {
    const gap = new Float32Array((gapsMs[i] ?? 0) * 16);
    parts.push(gap, clip);
    position += gap.length;
    const [a, b] = speechSpan(clip);
    truth.push([position + a, position + b]);
    position += clip.length;
  });
  parts.push(new Float32Array((gapsMs[clips.length] ?? 0) * 16));
  const samples = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    samples.set(p, offset);
    offset += p.length;
  }
  let seed = 12345;
  const amplitude = noiseRms * Math.sqrt(3);
  for (let i = 0; i < samples.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    samples[i] = (samples[i] ?? 0) + ((seed / 4294967296) * 2 - 1) * amplitude;
  }
  return { samples, truth };
}

const call = { signal: new AbortController().signal };

/** Frame-by-frame probabilities of a clip, one call per frame. */
async function probabilities(vad: SileroVad, samples: Float32Array): Promise<number[]> {
  const session = vad.openSession();
  const out: number[] = [];
  for (let i = 0; i + FRAME <= samples.length; i += FRAME)
    out.push(...(await session.probabilities(samples.subarray(i, i + FRAME), call)));
  session.close();
  return out;
}

/** The whole frames of a clip, for one batch. */
function wholeFrames(samples: Float32Array): Float32Array {
  return samples.subarray(0, samples.length - (samples.length % FRAME));
}

describe('Silero VAD on onnxruntime-node', () => {
  let vad: SileroVad;
  let sentence: Float32Array;

  before(async () => {
    vad = await createSileroVad();
    assert.equal(vad.model, 'silero-vad-v6');
    sentence = speak('en-us', 'The quick brown fox jumps over the lazy dog.');
  });
  after(async () => {
    await vad.release();
    rmSync(workDir, { recursive: true, force: true });
  });

  test('speech scores high and silence low', async () => {
    const { samples, truth } = compose([sentence], [1000, 1000], 0.003);
    const probs = await probabilities(vad, samples);
    const [start, end] = truth[0] as [number, number];
    const inSpeech = probs.filter((_, f) => f * FRAME >= start && (f + 1) * FRAME <= end);
    const inSilence = probs.filter((_, f) => (f + 1) * FRAME <= start - 8000);
    assert.ok(inSpeech.filter((p) => p >= 0.5).length / inSpeech.length > 0.9);
    assert.ok(Math.max(...inSilence) < 0.2, `silence up to ${Math.max(...inSilence)}`);
    for (const p of probs) assert.ok(p >= 0 && p <= 1);
  });

  for (const version of ['v4', 'v5'] as const) {
    test(`${version} loads from @ricky0123/vad-web and detects the same sentence`, async () => {
      const other = await createSileroVad({ version });
      try {
        assert.equal(other.model, `silero-vad-${version}`);
        const probs = await probabilities(other, sentence);
        assert.ok(probs.filter((p) => p >= 0.5).length > probs.length / 2);
      } finally {
        await other.release();
      }
    });
  }

  test('each session keeps its own state: interleaved streams score as if alone', async () => {
    const silenceFirst = compose([sentence], [500, 0], 0.003).samples;
    const alone = await probabilities(vad, sentence);
    const a = vad.openSession();
    const b = vad.openSession();
    const interleaved: number[] = [];
    for (let i = 0; i + FRAME <= sentence.length; i += FRAME) {
      interleaved.push(...(await a.probabilities(sentence.subarray(i, i + FRAME), call)));
      await b.probabilities(silenceFirst.subarray(i, i + FRAME), call);
    }
    assert.deepEqual(interleaved, alone);
  });

  test('calls not awaited in turn run in order, on copies of the frames', async () => {
    const sequential = await probabilities(vad, sentence);
    const session = vad.openSession();
    const buffer = new Float32Array(3 * FRAME);
    const pending: Array<Promise<Float32Array>> = [];
    for (let i = 0; i + 3 * FRAME <= sentence.length; i += 3 * FRAME) {
      buffer.set(sentence.subarray(i, i + 3 * FRAME));
      pending.push(session.probabilities(buffer, call));
    }
    const batched = (await Promise.all(pending)).flatMap((batch) => [...batch]);
    assert.ok(batched.length > 30);
    assert.deepEqual(batched, sequential.slice(0, batched.length));
  });

  test('one batch scores exactly as frame by frame, and infer is stateless', async () => {
    const frames = wholeFrames(sentence);
    const sequential = await probabilities(vad, frames);
    const session = vad.openSession();
    assert.deepEqual([...(await session.probabilities(frames, call))], sequential);
    session.close();

    const half = ((frames.length / FRAME) >> 1) * FRAME;
    const start = vad.initialState();
    assert.equal(start.length, vad.stateLength);
    const first = await vad.infer(frames.subarray(0, half), start);
    const second = await vad.infer(frames.subarray(half), first.state);
    assert.deepEqual([...first.probabilities, ...second.probabilities], sequential);
    // Same inputs, same outputs: nothing was kept between calls, and the state passed in is untouched.
    assert.deepEqual(start, vad.initialState());
    const again = await vad.infer(frames.subarray(half), first.state);
    assert.deepEqual(again.probabilities, second.probabilities);
    assert.deepEqual(again.state, second.state);
  });

  test('an aborted batch is refused', async () => {
    const session = vad.openSession();
    const controller = new AbortController();
    controller.abort(new VoiceError(Reason.Cancelled, 'gone'));
    await assert.rejects(
      session.probabilities(new Float32Array(FRAME), { signal: controller.signal }),
      (e: unknown) => e instanceof VoiceError && e.reason === Reason.Cancelled,
    );
  });

  test('a batch of partial frames or a bad state is rejected, and a closed session refuses frames', async () => {
    const session = vad.openSession();
    await assert.rejects(
      session.probabilities(new Float32Array(FRAME + 480), call),
      (e: unknown) =>
        e instanceof VoiceError && e.reason === Reason.InvalidArgument && e.rawMessage.includes('512'),
    );
    await assert.rejects(
      vad.infer(new Float32Array(FRAME), new Float32Array(3)),
      (e: unknown) => e instanceof VoiceError && e.reason === Reason.InvalidArgument,
    );
    session.close();
    await assert.rejects(session.probabilities(new Float32Array(FRAME), call), VoiceError);
  });

  test('bad options are rejected', async () => {
    await assert.rejects(createSileroVad({ version: 'v9' as 'v5' }), (e: unknown) => e instanceof VoiceError);
    await assert.rejects(
      createSileroVad({ version: 'v5', modelPath: join(workDir, 'missing.onnx') }),
      (e: unknown) => e instanceof VoiceError && e.reason === Reason.EngineUnavailable,
    );
  });

  test('three sentences with 1.0 s and 1.5 s gaps make exactly three utterances at the right offsets', async () => {
    const clips = [
      sentence,
      speak('en-gb', 'Please call Stella and ask her to bring these things with her from the store.'),
      speak('de', 'Guten Morgen, wie geht es Ihnen heute?'),
    ];
    const { samples, truth } = compose(clips, [800, 1000, 1500, 1000], 0.005);
    const probs = await probabilities(vad, samples);
    for (const speechPadMs of [0, 200]) {
      const segmenter = createUtteranceSegmenter({ speechPadMs });
      const events = probs.flatMap((p, f) => segmenter.push(samples.subarray(f * FRAME, (f + 1) * FRAME), p));
      events.push(...segmenter.end());
      assert.deepEqual(
        events.map((e) => e.type),
        Array.from({ length: 3 }, () => ['speech-started', 'speech-ended', 'utterance']).flat(),
      );
      const utterances = events.filter((e): e is UtteranceEvent => e.type === 'utterance');
      utterances.forEach((u, i) => {
        const [start, end] = (truth[i] as [number, number]).map((s) => s / 16) as [number, number];
        assert.equal(u.reason, 'silence');
        assert.ok(
          Math.abs(u.startMs + speechPadMs - start) <= 250,
          `utterance ${i} starts at ${u.startMs}, truth ${start}`,
        );
        assert.ok(
          Math.abs(u.endMs - speechPadMs - end) <= 250,
          `utterance ${i} ends at ${u.endMs}, truth ${end}`,
        );
        if (speechPadMs > 0)
          assert.ok(u.startMs <= start && u.endMs >= end, `utterance ${i} clips its speech`);
      });
    }
  });
});
