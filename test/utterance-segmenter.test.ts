import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Reason, VoiceError } from '../server/errors.js';
import {
  createUtteranceSegmenter,
  resolveSegmenterConfig,
  type SegmenterConfig,
  type SegmenterEvent,
  type SegmenterOptions,
  type SpeculationEvent,
  type UtteranceEvent,
} from '../server/pipeline/utterance-segmenter.js';
import { seededRandom } from './helpers/random.js';

const FRAME = 512;
const FRAME_MS = 32;
const SPEECH = 0.9;
const SILENCE = 0.02;

/** One frame of a synthetic stream: its VAD probability and the loudness of its samples. */
interface FrameSpec {
  readonly p: number;
  readonly amp: number;
}

const speech = (frames: number, amp = 0.5): FrameSpec[] =>
  Array.from({ length: frames }, () => ({ p: SPEECH, amp }));
const silence = (frames: number, amp = 0.01): FrameSpec[] =>
  Array.from({ length: frames }, () => ({ p: SILENCE, amp }));

interface Run {
  readonly stream: Float32Array;
  /** Events with the index of the frame whose push produced them (frames.length for end()). */
  readonly events: Array<SegmenterEvent & { readonly frame: number }>;
  readonly utterances: UtteranceEvent[];
  readonly discarded: number;
}

function run(
  frames: readonly FrameSpec[],
  config: Partial<SegmenterConfig> = {},
  frameSamples = FRAME,
  options: SegmenterOptions = {},
): Run {
  const random = seededRandom(42);
  const stream = new Float32Array(frames.length * frameSamples);
  frames.forEach((f, i) => {
    for (let k = 0; k < frameSamples; k++) stream[i * frameSamples + k] = (random() * 2 - 1) * f.amp;
  });
  const segmenter = createUtteranceSegmenter(config, options);
  const events: Run['events'] = [];
  frames.forEach((f, i) => {
    const frame = stream.subarray(i * frameSamples, (i + 1) * frameSamples);
    for (const e of segmenter.push(frame, f.p)) events.push({ ...e, frame: i });
  });
  for (const e of segmenter.end()) events.push({ ...e, frame: frames.length });
  const utterances = events.filter((e): e is UtteranceEvent & { frame: number } => e.type === 'utterance');
  return { stream, events, utterances, discarded: segmenter.discardedSamples };
}

/** Every utterance is exactly its slice of the stream, slices do not overlap, nothing is lost. */
function assertExactAccounting(r: Run): void {
  let total = 0;
  let previousEnd = 0;
  for (const u of r.utterances) {
    assert.ok(u.startMs >= previousEnd, `utterance ${u.utteranceIndex} overlaps the previous one`);
    assert.equal(u.audio.length, (u.endMs - u.startMs) * 16);
    assert.deepEqual(u.audio, r.stream.slice(u.startMs * 16, u.endMs * 16));
    total += u.audio.length;
    previousEnd = u.endMs;
  }
  assert.equal(total + r.discarded, r.stream.length);
}

const types = (r: Run): string[] => r.events.map((e) => `${e.type}:${e.utteranceIndex}`);

describe('utterance segmenter', () => {
  test('one utterance: started once min speech is confirmed, ended after min silence, padded both sides', () => {
    const r = run([...silence(31), ...speech(31), ...silence(40)]);
    assert.deepEqual(types(r), ['speech-started:0', 'speech-ended:0', 'utterance:0']);
    const [started, ended, utterance] = r.events;
    // Speech starts at frame 31 (992 ms); 250 ms of it are confirmed with the 8th speech frame.
    assert.equal(started?.frame, 31 + 7);
    assert.equal(started?.type === 'speech-started' && started.offsetMs, 992 - 200);
    // Speech ends at 62 × 32 = 1984 ms; the 16th silent frame brings 512 ms of silence.
    assert.equal(ended?.frame, 62 + 15);
    assert.equal(ended?.type === 'speech-ended' && ended.offsetMs, 1984 + 200);
    assert.ok(utterance?.type === 'utterance');
    assert.equal(utterance.startMs, 792);
    assert.equal(utterance.endMs, 2184);
    assert.equal(utterance.reason, 'silence');
    assert.equal(utterance.final, true);
    assertExactAccounting(r);
  });

  test('a burst shorter than min speech produces no event and is discarded as silence', () => {
    const r = run([...silence(20), ...speech(7), ...silence(30), ...speech(3), ...silence(5)]);
    assert.deepEqual(r.events, []);
    assert.equal(r.discarded, r.stream.length);
  });

  test('a burst just reaching min speech makes an utterance', () => {
    const r = run([...silence(20), ...speech(8), ...silence(30)]);
    assert.deepEqual(types(r), ['speech-started:0', 'speech-ended:0', 'utterance:0']);
    assertExactAccounting(r);
  });

  test('min speech 0 starts speech on the first speech frame', () => {
    const r = run([...silence(20), ...speech(1), ...silence(30)], { minSpeechMs: 0 });
    assert.equal(r.events[0]?.type, 'speech-started');
    assert.equal(r.events[0]?.frame, 20);
  });

  test('a pause shorter than min silence keeps the utterance; a longer one splits it', () => {
    const short = run([...silence(10), ...speech(20), ...silence(15), ...speech(20), ...silence(20)]);
    assert.equal(short.utterances.length, 1);
    const long = run([...silence(10), ...speech(20), ...silence(16), ...speech(20), ...silence(20)]);
    assert.deepEqual(types(long), [
      'speech-started:0',
      'speech-ended:0',
      'utterance:0',
      'speech-started:1',
      'speech-ended:1',
      'utterance:1',
    ]);
    assertExactAccounting(long);
  });

  test('min silence is configurable', () => {
    const frames = [...silence(10), ...speech(20), ...silence(10), ...speech(20), ...silence(40)];
    assert.equal(run(frames, { minSilenceMs: 300 }).utterances.length, 2);
    assert.equal(run(frames, { minSilenceMs: 500 }).utterances.length, 1);
  });

  test('hysteresis: probability between negThreshold and threshold continues speech but never starts it', () => {
    const middle = (n: number): FrameSpec[] => Array.from({ length: n }, () => ({ p: 0.4, amp: 0.3 }));
    const alone = run([...silence(10), ...middle(40), ...silence(20)]);
    assert.deepEqual(alone.events, []);
    const r = run([...silence(10), ...speech(10), ...middle(30), ...silence(20)]);
    assert.equal(r.utterances.length, 1);
    assert.equal(r.utterances[0]?.endMs, (10 + 10 + 30) * FRAME_MS + 200);
  });

  test('padding is limited by the audio available and never overlaps the neighbour', () => {
    // Speech starts at 96 ms: only 96 ms of lead-in exist. The 18-frame gap (576 ms) holds both pads.
    const r = run([...silence(3), ...speech(20), ...silence(18), ...speech(20), ...silence(3)], {
      speechPadMs: 300,
    });
    assert.equal(r.utterances.length, 2);
    const [first, second] = r.utterances;
    assert.equal(first?.startMs, 0);
    assert.equal(first?.endMs, 23 * FRAME_MS + 300);
    assert.equal(second?.startMs, 41 * FRAME_MS - 276);
    // The stream ends 96 ms after the speech: the end-of-stream flush pads with what there is.
    assert.equal(second?.endMs, 64 * FRAME_MS);
    assert.equal(second?.reason, 'end-of-stream');
    assertExactAccounting(r);
  });

  test('end() flushes the utterance in progress; an unconfirmed burst at the end is dropped', () => {
    const r = run([...silence(10), ...speech(30), ...silence(3)]);
    assert.deepEqual(types(r), ['speech-started:0', 'speech-ended:0', 'utterance:0']);
    assert.equal(r.events[1]?.frame, 43);
    assert.equal(r.utterances[0]?.reason, 'end-of-stream');
    assert.equal(r.utterances[0]?.endMs, 43 * FRAME_MS);
    assertExactAccounting(r);
    const burst = run([...silence(10), ...speech(5)]);
    assert.deepEqual(burst.events, []);
    assert.equal(burst.discarded, burst.stream.length);
  });

  test('an over-long utterance is cut at its quietest point and continues without losing samples', () => {
    // 11.4 s of speech from 1024 ms. With a 5 s limit the first utterance (from 824 ms) must end by
    // 5824 ms; the cut is sought in its last 2.5 s. A half-loud dip at 4.0 s and a near-silent one
    // at 5.12–5.28 s: the cut must land in the quiet one, while the VAD still says "speech".
    const frames = [...silence(32), ...speech(355), ...silence(30)];
    for (let i = 125; i < 130; i++) frames[i] = { p: SPEECH, amp: 0.1 };
    for (let i = 160; i < 165; i++) frames[i] = { p: SPEECH, amp: 0.001 };
    const r = run(frames, { maxUtteranceMs: 5000 });
    const [first] = r.utterances;
    assert.ok(first !== undefined);
    assert.equal(first.reason, 'max-length');
    assert.equal(first.startMs, 824);
    assert.ok(first.endMs >= 160 * FRAME_MS && first.endMs <= 165 * FRAME_MS, `cut at ${first.endMs} ms`);
    // Every piece is within the limit; each continuation starts where the previous one was cut.
    for (const u of r.utterances) assert.ok(u.endMs - u.startMs <= 5000);
    for (let i = 1; i < r.utterances.length; i++) {
      assert.equal(r.utterances[i]?.startMs, r.utterances[i - 1]?.endMs);
    }
    assert.equal(r.utterances.length, 3);
    assert.equal(r.utterances.at(-1)?.reason, 'silence');
    // Each cut closes one utterance and opens the next at the same offset.
    const cutEvents = r.events.filter((e) => e.frame === r.events[1]?.frame);
    assert.deepEqual(
      cutEvents.map((e) => `${e.type}:${e.utteranceIndex}`),
      ['speech-ended:0', 'utterance:0', 'speech-started:1'],
    );
    assert.equal(cutEvents[2]?.type === 'speech-started' && cutEvents[2].offsetMs, first.endMs);
    assertExactAccounting(r);
  });

  test('a limit reached in trailing silence ends the utterance at speech end plus padding', () => {
    // Speech ends at 4704 ms while silence is still shorter than min silence (2 s) at the 5 s limit.
    const r = run([...silence(7), ...speech(140), ...silence(60)], {
      maxUtteranceMs: 5000,
      minSilenceMs: 2000,
    });
    assert.equal(r.utterances.length, 1);
    assert.equal(r.utterances[0]?.reason, 'max-length');
    assert.equal(r.utterances[0]?.endMs, 147 * FRAME_MS + 200);
    assertExactAccounting(r);
  });

  test('snapshot() gives the growing utterance, then nothing once it is final', () => {
    const segmenter = createUtteranceSegmenter();
    const frame = new Float32Array(FRAME).fill(0.25);
    assert.equal(segmenter.snapshot(), undefined);
    for (let i = 0; i < 10; i++) segmenter.push(frame, SILENCE);
    for (let i = 0; i < 20; i++) segmenter.push(frame, SPEECH);
    const partial = segmenter.snapshot();
    assert.ok(partial !== undefined);
    assert.equal(partial.utteranceIndex, 0);
    assert.equal(partial.startMs, 320 - 200);
    assert.equal(partial.endMs, 30 * FRAME_MS);
    assert.equal(partial.audio.length, (partial.endMs - partial.startMs) * 16);
    for (let i = 0; i < 7; i++) segmenter.push(frame, SILENCE);
    assert.equal(segmenter.snapshot()?.endMs, 30 * FRAME_MS + 200);
    for (let i = 0; i < 20; i++) segmenter.push(frame, SILENCE);
    assert.equal(segmenter.snapshot(), undefined);
  });

  test('silence is not accumulated: only the pad buffer is held', () => {
    const segmenter = createUtteranceSegmenter({ speechPadMs: 200 });
    const frame = new Float32Array(FRAME);
    const frames = 60 * 31; // about a minute
    for (let i = 0; i < frames; i++) assert.deepEqual(segmenter.push(frame, SILENCE), []);
    assert.equal(segmenter.discardedSamples, frames * FRAME - 200 * 16);
  });

  test('frames of any length are accounted for exactly', () => {
    const frames = [...silence(50), ...speech(60), ...silence(60), ...speech(30), ...silence(10)];
    const r = run(frames, {}, 300);
    assert.equal(r.utterances.length, 2);
    assertExactAccounting(r);
  });

  test('random probability sequences keep every invariant', () => {
    const random = seededRandom(7);
    for (let trial = 0; trial < 40; trial++) {
      const frames: FrameSpec[] = [];
      while (frames.length < 800) {
        const p = random() < 0.5 ? random() * 0.3 : 0.3 + random() * 0.7;
        const n = 1 + Math.floor(random() * 40);
        for (let i = 0; i < n; i++) frames.push({ p, amp: p * random() });
      }
      const config = {
        maxUtteranceMs: 2000 + Math.floor(random() * 4) * 1000,
        speechPadMs: Math.floor(random() * 5) * 100,
      };
      const r = run(frames, config);
      assertExactAccounting(r);
      let open = -1;
      let next = 0;
      for (const e of r.events) {
        if (e.type === 'speech-started') {
          assert.equal(open, -1);
          assert.equal(e.utteranceIndex, next);
          open = e.utteranceIndex;
        } else if (e.type === 'speech-ended') {
          assert.equal(e.utteranceIndex, open);
        } else if (e.type !== 'utterance') {
          assert.fail(`${e.type} without speculation asked for`);
        } else {
          assert.equal(e.utteranceIndex, open);
          assert.ok(e.audio.length > 0 && e.endMs - e.startMs <= config.maxUtteranceMs);
          // Some frame inside it counted as speech: no utterance is silence alone.
          const first = Math.floor((e.startMs * 16) / FRAME);
          const last = Math.ceil((e.endMs * 16) / FRAME);
          assert.ok(frames.slice(first, last).some((f) => f.p >= 0.3));
          open = -1;
          next += 1;
        }
      }
      assert.equal(open, -1);
    }
  });

  test('config outside its range is rejected with the field named', () => {
    const expectInvalid = (config: Partial<SegmenterConfig>, field: string): void => {
      assert.throws(
        () => createUtteranceSegmenter(config),
        (e: unknown) =>
          e instanceof VoiceError && e.reason === Reason.InvalidArgument && e.rawMessage.includes(field),
      );
    };
    expectInvalid({ threshold: 0.05 }, 'speech_threshold');
    expectInvalid({ threshold: Number.NaN }, 'speech_threshold');
    expectInvalid({ minSilenceMs: 50 }, 'min_silence_duration_ms');
    expectInvalid({ minSpeechMs: 6000 }, 'min_speech_duration_ms');
    expectInvalid({ speechPadMs: 1500 }, 'speech_pad_ms');
    expectInvalid({ maxUtteranceMs: 500 }, 'maxUtteranceMs');
    expectInvalid({ threshold: 0.5, negThreshold: 0.6 }, 'negThreshold');
    assert.equal(resolveSegmenterConfig({ threshold: 0.7 }).negThreshold, 0.7 - 0.15);
  });

  test('audio after end() is out of order', () => {
    const segmenter = createUtteranceSegmenter();
    segmenter.end();
    assert.throws(
      () => segmenter.push(new Float32Array(FRAME), SILENCE),
      (e: unknown) => e instanceof VoiceError && e.reason === Reason.OutOfOrder,
    );
  });
});

describe('utterance segmenter speculation', () => {
  const speculating = (frames: readonly FrameSpec[], config: Partial<SegmenterConfig> = {}): Run =>
    run(frames, config, FRAME, { speculate: true });
  const speculations = (r: Run) =>
    r.events.filter((e): e is SpeculationEvent & { frame: number } => e.type === 'speculation');

  /**
   * Every speculation is settled by the next event about its utterance that is not a speech event:
   * a cancellation, or the utterance with the very same offsets and samples, in a later push.
   */
  function assertSettled(r: Run): void {
    let open: (SpeculationEvent & { frame: number }) | undefined;
    for (const e of r.events) {
      if (e.type === 'speculation') {
        assert.equal(open, undefined, 'one speculation at a time');
        open = e;
      } else if (e.type === 'speculation-cancelled') {
        assert.equal(e.utteranceIndex, open?.utteranceIndex);
        open = undefined;
      } else if (e.type === 'utterance' && open !== undefined) {
        assert.equal(e.utteranceIndex, open.utteranceIndex);
        assert.ok(e.frame > open.frame, 'a speculation comes before its utterance is confirmed');
        assert.deepEqual([e.startMs, e.endMs], [open.startMs, open.endMs]);
        assert.deepEqual(Buffer.from(e.audio.buffer), Buffer.from(open.audio.buffer));
        open = undefined;
      }
    }
    assert.equal(open, undefined, 'every speculation is settled');
  }

  test('fires once the silence covers the padding, with exactly the samples the utterance then carries', () => {
    const r = speculating([...silence(31), ...speech(31), ...silence(40)]);
    assert.deepEqual(types(r), ['speech-started:0', 'speculation:0', 'speech-ended:0', 'utterance:0']);
    const [speculation] = speculations(r);
    const [utterance] = r.utterances;
    assert.ok(speculation !== undefined && utterance !== undefined);
    // Speech ends at 1984 ms; the 7th silent frame brings 224 ms of silence, the first ≥ 200 ms pad.
    assert.equal(speculation.frame, 62 + 6);
    assert.equal(speculation.startMs, 792);
    assert.equal(speculation.endMs, 1984 + 200);
    // The utterance comes with the 16th silent frame: 9 frames (288 ms) later.
    assert.equal(r.events.find((e) => e.type === 'utterance')?.frame, 62 + 15);
    assertSettled(r);
    // The speculation is a copy: the utterance still accounts for every sample.
    assertExactAccounting(r);
  });

  test('with no padding it fires on the first silent frame', () => {
    const r = speculating([...silence(31), ...speech(31), ...silence(40)], { speechPadMs: 0 });
    const [speculation] = speculations(r);
    assert.equal(speculation?.frame, 62);
    assert.equal(speculation?.endMs, 1984);
    assertSettled(r);
  });

  test('never fires when min silence does not outlast the padding by a frame', () => {
    const frames = [...silence(31), ...speech(31), ...silence(40)];
    for (const config of [
      { minSilenceMs: 200, speechPadMs: 300 },
      { minSilenceMs: 300, speechPadMs: 300 },
      // 210 ms of silence and 200 ms of padding are both first covered by the 7th frame.
      { minSilenceMs: 210, speechPadMs: 200 },
    ]) {
      const r = speculating(frames, config);
      assert.deepEqual(
        types(r),
        ['speech-started:0', 'speech-ended:0', 'utterance:0'],
        JSON.stringify(config),
      );
    }
  });

  test('speech that resumes cancels it; the next silence speculates on the longer utterance', () => {
    const r = speculating([...silence(10), ...speech(20), ...silence(10), ...speech(20), ...silence(30)]);
    assert.deepEqual(types(r), [
      'speech-started:0',
      'speculation:0',
      'speculation-cancelled:0',
      'speculation:0',
      'speech-ended:0',
      'utterance:0',
    ]);
    const [first, second] = speculations(r);
    assert.equal(first?.frame, 30 + 6);
    assert.equal(r.events.find((e) => e.type === 'speculation-cancelled')?.frame, 40);
    assert.equal(first?.endMs, 30 * FRAME_MS + 200);
    assert.equal(second?.endMs, 60 * FRAME_MS + 200);
    assert.equal(r.utterances[0]?.endMs, second?.endMs);
    assertSettled(r);
    assertExactAccounting(r);
  });

  test('a pause shorter than the padding speculates on nothing; each silence speculates at most once', () => {
    const r = speculating([...silence(10), ...speech(20), ...silence(6), ...speech(20), ...silence(200)]);
    assert.deepEqual(types(r), ['speech-started:0', 'speculation:0', 'speech-ended:0', 'utterance:0']);
  });

  test('is not emitted unless asked for', () => {
    const frames = [...silence(10), ...speech(20), ...silence(10), ...speech(20), ...silence(30)];
    assert.deepEqual(types(run(frames)), ['speech-started:0', 'speech-ended:0', 'utterance:0']);
  });

  test('max-length cuts in speech are not speculated on', () => {
    const frames = [...silence(32), ...speech(355), ...silence(30)];
    for (let i = 160; i < 165; i++) frames[i] = { p: SPEECH, amp: 0.001 };
    const r = speculating(frames, { maxUtteranceMs: 5000 });
    assert.equal(r.utterances.length, 3);
    assert.deepEqual(
      r.utterances.map((u) => u.reason),
      ['max-length', 'max-length', 'silence'],
    );
    // Only the last utterance, ended by silence, had a speculation.
    assert.deepEqual(
      speculations(r).map((s) => s.utteranceIndex),
      [2],
    );
    assert.ok(!r.events.some((e) => e.type === 'speculation-cancelled'));
    assertSettled(r);
    assertExactAccounting(r);
  });

  test('a length limit reached in the silence confirms it when it ends the utterance at the same sample', () => {
    // Speech ends at 4704 ms; the 5 s limit comes at 5024 ms, within the 2 s of min silence.
    const r = speculating([...silence(7), ...speech(140), ...silence(60)], {
      maxUtteranceMs: 5000,
      minSilenceMs: 2000,
    });
    assert.deepEqual(types(r), ['speech-started:0', 'speculation:0', 'speech-ended:0', 'utterance:0']);
    assert.equal(r.utterances[0]?.reason, 'max-length');
    assertSettled(r);
  });

  test('a length cut in the silence that ends the utterance elsewhere cancels it first', () => {
    // Speech from 224 ms to 4736 ms with a near-silent dip at 3840–4032 ms; the limit (5024 ms) comes
    // 288 ms into the silence, after the speculation, and cuts in the dip, before the speech ends.
    const frames = [...silence(7), ...speech(141), ...silence(70)];
    for (let i = 120; i < 126; i++) frames[i] = { p: SPEECH, amp: 0.001 };
    const r = speculating(frames, { maxUtteranceMs: 5000, minSilenceMs: 2000 });
    const cutFrame = r.events.find((e) => e.type === 'utterance')?.frame;
    assert.equal(cutFrame, 156);
    assert.deepEqual(
      r.events.filter((e) => e.frame === cutFrame).map((e) => `${e.type}:${e.utteranceIndex}`),
      ['speculation-cancelled:0', 'speech-ended:0', 'utterance:0', 'speech-started:1', 'speculation:1'],
    );
    assert.ok((r.utterances[0]?.endMs ?? 0) < 4032);
    assert.equal(r.utterances[1]?.endMs, 148 * FRAME_MS + 200);
    assertSettled(r);
    assertExactAccounting(r);
  });

  test('the end of the stream in the silence flushes the utterance it speculated on', () => {
    const r = speculating([...silence(10), ...speech(20), ...silence(10)]);
    assert.deepEqual(types(r), ['speech-started:0', 'speculation:0', 'speech-ended:0', 'utterance:0']);
    assert.equal(r.utterances[0]?.reason, 'end-of-stream');
    assertSettled(r);
  });

  test('random sequences: the same utterances as without speculation, every speculation settled', () => {
    const random = seededRandom(11);
    for (let trial = 0; trial < 40; trial++) {
      const frames: FrameSpec[] = [];
      while (frames.length < 800) {
        const p = random() < 0.5 ? random() * 0.3 : 0.3 + random() * 0.7;
        const n = 1 + Math.floor(random() * 25);
        for (let i = 0; i < n; i++) frames.push({ p, amp: p * random() });
      }
      const config = {
        maxUtteranceMs: 2000 + Math.floor(random() * 4) * 1000,
        speechPadMs: Math.floor(random() * 5) * 100,
        minSilenceMs: 100 + Math.floor(random() * 6) * 100,
      };
      const plain = run(frames, config);
      const r = speculating(frames, config);
      const withoutSpeculation = r.events.filter(
        (e) => e.type !== 'speculation' && e.type !== 'speculation-cancelled',
      );
      assert.deepEqual(withoutSpeculation, plain.events);
      assertSettled(r);
    }
  });
});

describe('utterance segmenter on a continued timeline', () => {
  const frames = [...silence(31), ...speech(31), ...silence(40), ...speech(20), ...silence(30)];

  test('from an origin and a first index, gives the same utterances shifted and renumbered', () => {
    const plain = run(frames);
    const shifted = run(frames, {}, FRAME, { originSample: 960 * 16, firstUtteranceIndex: 7 });
    assert.deepEqual(
      shifted.events.map((e) => `${e.type}:${e.utteranceIndex}:${'startMs' in e ? e.startMs - 960 : ''}`),
      plain.events.map((e) => `${e.type}:${e.utteranceIndex + 7}:${'startMs' in e ? e.startMs : ''}`),
    );
    shifted.utterances.forEach((u, i) => {
      assert.deepEqual(u.audio, plain.utterances[i]?.audio);
    });
  });

  test('quietSince: the origin at first, undefined while speech is pending or on, the end of the spell after', () => {
    const segmenter = createUtteranceSegmenter({}, { originSample: 3200, firstUtteranceIndex: 2 });
    assert.equal(segmenter.quietSince, 3200);
    assert.equal(segmenter.nextUtteranceIndex, 2);
    const frame = new Float32Array(FRAME);
    for (let i = 0; i < 5; i++) segmenter.push(frame, SILENCE);
    assert.equal(segmenter.quietSince, 3200);
    segmenter.push(frame, SPEECH);
    assert.equal(segmenter.quietSince, undefined, 'pending');
    let endedAt: number | undefined;
    for (let i = 0; i < 40; i++) {
      const events = segmenter.push(frame, i < 20 ? SPEECH : SILENCE);
      assert.equal(
        segmenter.quietSince === undefined,
        endedAt === undefined && !events.some((e) => e.type === 'utterance'),
      );
      if (events.some((e) => e.type === 'utterance')) endedAt = 3200 + (5 + 1 + i + 1) * FRAME;
    }
    assert.ok(endedAt !== undefined, 'the utterance ended');
    assert.equal(segmenter.quietSince, endedAt);
    assert.equal(segmenter.nextUtteranceIndex, 3);
  });
});
