import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createSileroVad, type SileroVad } from '../server/engines/silero-vad.js';
import type { EngineCallOptions, VadSession } from '../server/engines/types.js';
import { type DetectorEvent, detectSpeech } from '../server/pipeline/speech-detector.js';
import {
  createUtteranceSegmenter,
  type SpeculationEvent,
  type UtteranceEvent,
} from '../server/pipeline/utterance-segmenter.js';
import { concat, silence, speak } from './helpers/speech.js';

const MAX_BATCH_FRAMES = 32;

/** A real Silero session that records how many frames each call carried. */
function recording(vad: SileroVad): { session: VadSession; batches: number[] } {
  const inner = vad.openSession();
  const batches: number[] = [];
  const session: VadSession = {
    frameSamples: inner.frameSamples,
    probabilities(frames: Float32Array, options: EngineCallOptions) {
      batches.push(frames.length / inner.frameSamples);
      return inner.probabilities(frames, options);
    },
    close: () => inner.close(),
  };
  return { session, batches };
}

async function* chunksOf(samples: Float32Array, size: number): AsyncGenerator<Float32Array> {
  for (let start = 0; start < samples.length; start += size) yield samples.slice(start, start + size);
}

async function detect(vad: SileroVad, samples: Float32Array, chunkSize: number, speculate = false) {
  const { session, batches } = recording(vad);
  const events: DetectorEvent[] = [];
  try {
    for await (const event of detectSpeech(
      chunksOf(samples, chunkSize),
      session,
      createUtteranceSegmenter({}, { speculate }),
      new AbortController().signal,
    )) {
      events.push(event);
    }
  } finally {
    session.close();
  }
  return { events, batches };
}

const summary = (events: readonly DetectorEvent[]) =>
  events.flatMap((event) => {
    switch (event.type) {
      case 'progress':
        return [];
      case 'utterance':
      case 'speculation':
        return [
          `${event.type} ${event.utteranceIndex} ${event.startMs}-${event.endMs} ${event.audio.length}`,
        ];
      case 'speculation-cancelled':
        return [`${event.type} ${event.utteranceIndex}`];
      default:
        return [`${event.type} ${event.utteranceIndex} ${event.offsetMs}`];
    }
  });

describe('speech detector', () => {
  let vad: SileroVad;
  before(async () => {
    vad = await createSileroVad();
  });
  after(() => vad.release());

  test('one huge chunk goes to the VAD in batches of at most one second, with the same results', async () => {
    const audio = concat(
      silence(1),
      speak('The first sentence is spoken here.'),
      silence(1.5),
      speak('And here is the second one, a little later.'),
      silence(1.5),
    );
    const frames = Math.floor(audio.length / 512);
    assert.ok(frames > 4 * MAX_BATCH_FRAMES, `${frames} frames`);

    const whole = await detect(vad, audio, audio.length);
    assert.ok(
      whole.batches.every((count) => count >= 1 && count <= MAX_BATCH_FRAMES),
      `batch sizes ${whole.batches.join(', ')}`,
    );
    assert.ok(whole.batches.length >= Math.ceil(frames / MAX_BATCH_FRAMES));
    assert.equal(
      whole.batches.reduce((a, b) => a + b, 0),
      frames,
    );
    const progress = whole.events.filter((event) => event.type === 'progress');
    assert.equal(progress.length, whole.batches.length, 'progress after every batch');
    assert.equal(progress.at(-1)?.offsetMs, (frames * 512) / 16);

    const utterances = whole.events.filter((event) => event.type === 'utterance');
    assert.equal(utterances.length, 2, summary(whole.events).join('\n'));

    // Small chunks give exactly the same events: the VAD state runs on across batches.
    const small = await detect(vad, audio, 1024);
    assert.deepEqual(summary(whole.events), summary(small.events));
  });

  test('speculation over real speech: utterances unchanged, each one speculated on carries the same samples', async () => {
    const audio = concat(
      silence(0.5),
      speak('The first sentence is spoken here.'),
      silence(1.2),
      speak('And here is the second one, a little later.'),
      silence(1.2),
    );
    const plain = await detect(vad, audio, 1024);
    const speculating = await detect(vad, audio, 1024, true);
    const isSpeculation = (event: DetectorEvent) =>
      event.type === 'speculation' || event.type === 'speculation-cancelled';
    assert.deepEqual(
      summary(speculating.events.filter((event) => !isSpeculation(event))),
      summary(plain.events),
    );

    let open: SpeculationEvent | undefined;
    const confirmed: UtteranceEvent[] = [];
    for (const event of speculating.events) {
      if (event.type === 'speculation') {
        assert.equal(open, undefined, 'one speculation at a time');
        open = event;
      } else if (event.type === 'speculation-cancelled') {
        assert.equal(event.utteranceIndex, open?.utteranceIndex);
        open = undefined;
      } else if (event.type === 'utterance' && open !== undefined) {
        assert.equal(event.utteranceIndex, open.utteranceIndex);
        assert.deepEqual([event.startMs, event.endMs], [open.startMs, open.endMs]);
        assert.deepEqual(event.audio, open.audio);
        confirmed.push(event);
        open = undefined;
      }
    }
    assert.equal(confirmed.length, 2, summary(speculating.events).join('\n'));
  });
});
