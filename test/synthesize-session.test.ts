import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createEspeakSynthesizer, type EspeakSynthesizer } from '../server/engines/espeak-ng.js';
import type { SpeechSynthesizer, VoiceInfo } from '../server/engines/types.js';
import { Reason, VoiceError } from '../server/errors.js';
import type { SynthesisSettings } from '../server/service/synthesis-config.js';
import {
  type SynthesizeSessionDeps,
  synthesizeStream,
  type TextInput,
} from '../server/service/synthesize-session.js';

const SENTENCES = [
  'The quick brown fox jumps over the lazy dog.',
  'Pack my box with five dozen liquor jugs.',
  'How vexingly quick daft zebras jump.',
  'Sphinx of black quartz, judge my vow.',
];
const TEXT = Array.from({ length: 8 }, () => SENTENCES.join(' ')).join(' ');
const PARALLELISM = 2;
/** MAX_QUEUED_RESPONSES in the session. */
const QUEUED = 8;

async function* single(text: string): AsyncGenerator<TextInput> {
  yield { kind: 'text', text };
}

interface Counts {
  /** Synthesize calls that returned audio. */
  synthesized: number;
  /** Responses the reader took (onAudio counts each as the writer takes it, never one taken back). */
  emitted: number;
}

function session(espeak: EspeakSynthesizer, counts: Counts, signal: AbortSignal) {
  const voice = espeak.voices().find((v) => v.id === 'espeak:en-us') as VoiceInfo;
  const settings: SynthesisSettings = {
    voice,
    speed: 1,
    output: { encoding: 'linear16' },
    sampleRate: voice.sampleRate,
  };
  const counting: SpeechSynthesizer = {
    voices: () => espeak.voices(),
    synthesize: async (text, options) => {
      const audio = await espeak.synthesize(text, options);
      counts.synthesized += 1;
      return audio;
    },
  };
  const deps: SynthesizeSessionDeps = {
    synthesizer: counting,
    limits: { maxTextChars: 100_000, maxStreamTextChars: 100_000 },
    parallelism: PARALLELISM,
    onAudio: () => {
      counts.emitted += 1;
    },
  };
  return synthesizeStream(single(TEXT), settings, deps, signal);
}

describe('synthesis session over eSpeak NG', () => {
  let espeak: EspeakSynthesizer;
  before(async () => {
    espeak = createEspeakSynthesizer();
    await espeak.load();
  });

  test('a slow reader holds back synthesis: few responses wait, and all of them arrive in order', async () => {
    const counts: Counts = { synthesized: 0, emitted: 0 };
    let consumed = 0;
    let sentencesDone = 0;
    let lastText = '';
    let maxAhead = 0;
    let samples = 0;
    for await (const response of session(espeak, counts, new AbortController().signal)) {
      assert.equal(response.sequenceNumber, consumed);
      assert.equal(response.sampleOffset, BigInt(samples));
      samples += response.sampleCount ?? 0;
      consumed += 1;
      if (response.text !== lastText) {
        sentencesDone += 1;
        lastText = response.text ?? '';
      }
      assert.equal(counts.emitted, consumed, 'audio is counted as it is taken');
      maxAhead = Math.max(maxAhead, counts.synthesized - sentencesDone);
      await sleep(15);
    }
    assert.equal(counts.synthesized, 4 * 8, 'every sentence spoken');
    assert.equal(consumed, counts.emitted);
    assert.ok(consumed > 3 * QUEUED, `${consumed} responses`);
    // Sentences ahead of the reader are either queued (at most one per queued response) or hold a slot.
    assert.ok(
      maxAhead <= QUEUED + PARALLELISM,
      `at most ${QUEUED + PARALLELISM} of ${counts.synthesized} sentences ahead of the reader, saw ${maxAhead}`,
    );
  });

  test('an abort while the session waits for the reader ends the stream and stops synthesis', async () => {
    const counts: Counts = { synthesized: 0, emitted: 0 };
    const controller = new AbortController();
    const iterator = session(espeak, counts, controller.signal)[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).done, false);
    await sleep(300);
    const emitted = counts.emitted;
    assert.equal(emitted, 1, 'the one response taken is counted');
    // Held back: the queued responses (at most one sentence each) and the sentences holding a slot.
    assert.ok(
      counts.synthesized <= QUEUED + PARALLELISM + 1,
      `${counts.synthesized} sentences synthesized for a reader that took one response`,
    );
    controller.abort(new VoiceError(Reason.Cancelled, 'the call was cancelled'));
    // The responses queued before the abort are still handed over, then the error.
    let taken = 1;
    await assert.rejects(
      async () => {
        while (!(await iterator.next()).done) taken += 1;
      },
      (error) => error instanceof VoiceError && error.reason === Reason.Cancelled,
    );
    await sleep(50);
    const synthesized = counts.synthesized;
    assert.ok(synthesized < 4 * 8, `${synthesized} sentences synthesized`);
    await sleep(300);
    assert.equal(counts.synthesized, synthesized, 'no synthesis after the abort');
    assert.ok(taken <= QUEUED + 1, `${taken} responses taken`);
    assert.equal(counts.emitted, taken, 'only the responses taken are counted');
  });
});
