import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { createCachedSynthesizer } from '../server/engines/cached-synthesizer.js';
import { createEspeakSynthesizer } from '../server/engines/espeak-ng.js';
import type { SpeechSynthesizer, SynthesizedAudio } from '../server/engines/types.js';

const VOICE = 'espeak:en-us';
const live = (): AbortSignal => new AbortController().signal;

describe('synthesis cache over eSpeak NG', () => {
  // eSpeak's audio for a text varies by a few samples from call to call (its pitch flutter runs on),
  // so each sentence is spoken once and replayed: byte counts below are then exact.
  const spoken = new Map<string, SynthesizedAudio>();
  let espeak: SpeechSynthesizer;
  before(async () => {
    const engine = createEspeakSynthesizer();
    await engine.load();
    for (const text of ['Hello there.', 'Good morning.', 'See you soon.']) {
      spoken.set(text, await engine.synthesize(text, { voice: VOICE, speed: 1, signal: live() }));
    }
    espeak = {
      voices: () => engine.voices(),
      synthesize: async (text) => {
        await new Promise((resolve) => setImmediate(resolve));
        const audio = spoken.get(text);
        assert.ok(audio, text);
        return { ...audio, samples: audio.samples.slice() };
      },
    };
  });

  const bytesOf = async (text: string) =>
    (await espeak.synthesize(text, { voice: VOICE, speed: 1, signal: live() })).samples.byteLength;

  test('concurrent misses for one sentence count its bytes once, and later sentences stay cached', async () => {
    const first = 'Hello there.';
    const others = ['Good morning.', 'See you soon.'];
    const firstBytes = await bytesOf(first);
    const otherBytes = await Promise.all(others.map(bytesOf));
    const lookups: string[] = [];
    // Room for exactly the three sentences: phantom bytes from a double count would evict them.
    const cache = createCachedSynthesizer(espeak, {
      maxBytes: firstBytes + otherBytes.reduce((a, b) => a + b, 0),
      onLookup: (result) => lookups.push(result),
    });
    const say = (text: string) => cache.synthesize(text, { voice: VOICE, speed: 1, signal: live() });

    const concurrent = await Promise.all([say(first), say(first), say(first)]);
    assert.deepEqual(lookups, ['miss', 'miss', 'miss']);
    for (const audio of concurrent) assert.equal(audio.samples.byteLength, firstBytes);
    assert.equal(cache.cachedBytes, firstBytes, 'one entry, counted once');

    for (const text of others) await say(text);
    assert.equal(cache.cachedBytes, firstBytes + otherBytes.reduce((a, b) => a + b, 0));

    lookups.length = 0;
    for (const text of [first, ...others]) await say(text);
    assert.deepEqual(lookups, ['hit', 'hit', 'hit'], 'every sentence is still cached');
  });
});
