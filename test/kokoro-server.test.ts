import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SynthesisConfig, SynthesizeResponse } from '../clients/node/index.js';
import { generateKokoroModel } from './fixtures/kokoro-model.js';
import { testModels } from './helpers/models.js';
import { rms } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

/**
 * Kokoro voices end to end: the real server on 127.0.0.1 with its worker pools loading the generated
 * Kokoro-shaped model from models.cache_dir, and the real Node client.
 */

const MODEL = 'cortex-test/tiny-kokoro';
const VOICE = 'kokoro:af_heart';
const KOKORO_RATE = 24_000;

type ConfigInit = Partial<Pick<SynthesisConfig, 'voice' | 'speed' | 'sampleRateHz'>>;

function samplesOf(responses: readonly SynthesizeResponse[]): Float32Array {
  const bytes = Buffer.concat(responses.map((r) => r.audio));
  const out = new Float32Array(bytes.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readInt16LE(i * 2) / 32768;
  return out;
}

describe('Kokoro voices through the server', () => {
  let t: TestServer;
  before(async () => {
    await generateKokoroModel({ root: (await testModels()).cacheDir, modelId: MODEL });
    t = await startServerWithEngines({
      security: { rate_limit: { enabled: false } },
      models: {
        tts: { voice: VOICE, kokoro: { enabled: true, model: MODEL, voices: ['af_heart', 'bm_george'] } },
      },
    });
  });
  after(() => t.stop());

  const speak = async (text: string, config: ConfigInit = {}) => {
    const out: SynthesizeResponse[] = [];
    for await (const response of t.client.synthesis.synthesizeText({ text, config })) out.push(response);
    return out;
  };
  const count = (responses: readonly SynthesizeResponse[]) =>
    responses.reduce((sum, r) => sum + r.sampleCount, 0);

  it('lists the Kokoro voices at 24 kHz, the configured one as the default', async () => {
    const voices = (await t.client.synthesis.listVoices({})).voices;
    assert.equal(voices[0]?.id, VOICE);
    assert.equal(voices[0]?.isDefault, true);
    assert.equal(voices[0]?.sampleRateHz, KOKORO_RATE);
    const british = voices.find((voice) => voice.id === 'kokoro:bm_george');
    assert.equal(british?.language, 'en-GB');
    assert.ok(
      voices.some((voice) => voice.id === 'espeak:en-us'),
      'eSpeak voices are still there',
    );
  });

  it('speaks SynthesizeText at 24 kHz, at a requested rate, and at the model’s own speed', async () => {
    const text = 'Hello there. This is the neural voice speaking.';
    const native = await speak(text, { voice: VOICE });
    assert.ok(native.length > 0);
    for (const response of native) {
      assert.equal(response.voice, VOICE);
      assert.equal(response.format?.sampleRateHz, KOKORO_RATE);
    }
    assert.ok(rms(samplesOf(native)) > 0.05, 'not silent');
    const byDefault = await speak(text);
    assert.equal(count(byDefault), count(native), 'the default voice is the configured Kokoro one');

    const resampled = await speak(text, { voice: VOICE, sampleRateHz: 16_000 });
    assert.equal(resampled[0]?.format?.sampleRateHz, 16_000);
    const expected = (count(native) * 16_000) / KOKORO_RATE;
    assert.ok(Math.abs(count(resampled) - expected) / expected < 0.01, `${count(resampled)} vs ${expected}`);

    const fast = await speak(text, { voice: VOICE, speed: 2 });
    assert.equal(count(fast) * 2, count(native), 'speed 2: half the frames of every token');
  });

  it('puts the words and visemes of its token durations on every chunk', async () => {
    const text = 'Hello there. This is the neural voice speaking.';
    for (const [rate, speed] of [
      [KOKORO_RATE, 1],
      [16_000, 2],
    ] as const) {
      const responses = await speak(text, { voice: VOICE, sampleRateHz: rate, speed });
      const total = count(responses);
      const words = new Map<bigint, { text: string; start: number; end: number }>();
      let covered = 0;
      for (const response of responses) {
        const chunkStart = Number(response.sampleOffset);
        const chunkEnd = chunkStart + response.sampleCount;
        for (const word of response.words) {
          assert.ok(Number(word.startSample) < chunkEnd && Number(word.endSample) > chunkStart);
          assert.equal(word.text, [...text].slice(word.textSpan?.start, word.textSpan?.end).join(''));
          words.set(word.startSample, {
            text: word.text,
            start: Number(word.startSample),
            end: Number(word.endSample),
          });
        }
        for (const viseme of response.visemes) {
          if (Number(viseme.startSample) < covered) continue;
          assert.equal(Number(viseme.startSample), covered, 'visemes back to back');
          covered = Number(viseme.endSample);
        }
      }
      assert.equal(covered, total, `${rate} Hz, speed ${speed}: visemes cover the audio`);
      const spoken = [...words.values()].sort((a, b) => a.start - b.start);
      assert.ok(spoken.length >= 6, `${spoken.length} words`);
      assert.equal(spoken[0]?.text, 'Hello');
      for (const [i, word] of spoken.entries()) {
        assert.ok(word.start < word.end && word.end <= total);
        assert.ok(i === 0 || word.start >= (spoken[i - 1]?.end ?? 0), 'in order');
      }
    }
  });
});
