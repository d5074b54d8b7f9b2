import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AudioEncoding, type SynthesizeResponse } from '../clients/node/index.js';
import { loadEspeakLibrary } from '../server/engines/espeak-library.js';
import { createEspeakSynthesizer, type EspeakSynthesizer } from '../server/engines/espeak-ng.js';
import { toEspeakInput } from '../server/engines/espeak-text.js';
import { OCULUS_VISEMES, VISEME_TABLE } from '../server/engines/viseme-table.js';
import { visemeRowsOf, visemesOf } from '../server/engines/visemes.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

/**
 * Word and viseme timing: eSpeak's own events, the audio itself, and every chunk the Synthesis
 * service sends (real server on 127.0.0.1, worker pools, Node client), at the native rate, resampled,
 * and at other speeds.
 */

const live = (): AbortSignal => new AbortController().signal;
/** Numbers, letters and a pangram: what makes every voice emit most of its phonemes. */
const INVENTORY_TEXT = '0 1 2 7 10 42 1234. a b c q x z. The quick brown fox jumps over the lazy dog.';

function rmsOf(samples: Float32Array, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i++) sum += (samples[i] ?? 0) ** 2;
  return Math.sqrt(sum / Math.max(1, end - start));
}

describe('viseme table', () => {
  it('uses all 15 Oculus visemes and every Azure id 0–21, each symbol once', () => {
    const used = new Set(VISEME_TABLE.flatMap((row) => row.oculus));
    assert.deepEqual([...used].sort(), [...OCULUS_VISEMES].sort());
    assert.deepEqual(
      [...new Set(VISEME_TABLE.map((row) => row.azure))].sort((a, b) => a - b),
      [...Array.from({ length: 22 }, (_, i) => i)],
    );
    assert.equal(new Set(VISEME_TABLE.map((row) => row.ipa)).size, VISEME_TABLE.length);
  });

  it('maps every phoneme every eSpeak voice emits', async () => {
    const library = await loadEspeakLibrary();
    const unmapped = new Map<string, string>();
    let phonemes = 0;
    for (const file of library.voiceFiles) {
      const run = library.speak(toEspeakInput(INVENTORY_TEXT).input, {
        voice: file.identifier,
        wordsPerMinute: 450,
      });
      for (const { ipa } of run.phonemes) {
        phonemes += 1;
        if (visemeRowsOf(ipa) === undefined) unmapped.set(ipa, file.identifier);
      }
    }
    assert.ok(
      library.voiceFiles.length > 100 && phonemes > 5000,
      `${library.voiceFiles.length} voices, ${phonemes} phonemes`,
    );
    assert.deepEqual(
      [...unmapped].map(([ipa, voice]) => `${voice}: "${ipa}"`),
      [],
    );
  });

  it('splits diphthongs and strips stress, length and aspiration', () => {
    const shapes = (ipa: string) => visemeRowsOf(ipa)?.flatMap((row) => row.oculus);
    assert.deepEqual(shapes('ˈaɪ'), ['aa', 'I']);
    assert.deepEqual(shapes('ˈɔːɹ'), ['O', 'RR']);
    assert.deepEqual(shapes('tʃ'), ['CH']);
    assert.deepEqual(shapes('kh'), ['kk']);
    assert.deepEqual(shapes(''), ['sil']);
    assert.deepEqual(shapes('(en)'), []);
    assert.equal(visemeRowsOf('☃'), undefined);
  });

  it('gives back-to-back visemes covering the audio, a diphthong sharing its time', () => {
    const visemes = visemesOf(
      [
        { ipa: 'h', startSample: 100, endSample: 200 },
        { ipa: 'ˈaɪ', startSample: 200, endSample: 400 },
        { ipa: '(en)', startSample: 400, endSample: 410 },
        { ipa: 'd', startSample: 410, endSample: 500 },
      ],
      600,
    );
    assert.deepEqual(
      visemes.map((v) => [v.oculus, v.azure, v.startSample, v.endSample]),
      [
        ['sil', 0, 0, 100],
        ['kk', 12, 100, 200],
        ['aa', 11, 200, 300],
        ['I', 11, 300, 410],
        ['DD', 19, 410, 500],
        ['sil', 0, 500, 600],
      ],
    );
  });
});

describe('eSpeak NG word timing', () => {
  let espeak: EspeakSynthesizer;
  before(async () => {
    espeak = createEspeakSynthesizer();
    await espeak.load();
  });

  it('starts each word at the first phoneme eSpeak sounds for it, and its samples are not silent', async () => {
    const text = 'Hello world, this is 1234 tests & <fun> [[x]] café 😀 done.';
    const audio = await espeak.synthesize(text, { voice: 'espeak:en-us', speed: 1, signal: live() });
    const words = audio.timing?.words ?? [];
    assert.deepEqual(
      words.map((w) => text.slice(w.start, w.end)),
      ['Hello', 'world', 'this', 'is', '1234', 'tests', '&', 'fun', 'x', 'café', '😀', 'done'],
    );
    // eSpeak's own events for the same input: each word starts at its first sounding phoneme.
    const library = await loadEspeakLibrary();
    const run = library.speak(toEspeakInput(text).input, { voice: 'gmw/en-US', wordsPerMinute: 175 });
    const sounding = run.phonemes.filter((p) => p.ipa !== '').map((p) => p.sample);
    for (const [index, word] of words.entries()) {
      assert.ok(word.startSample < word.endSample, `word ${index}`);
      assert.ok(words[index + 1] === undefined || word.endSample <= (words[index + 1]?.startSample ?? 0));
      assert.ok(
        sounding.some((sample) => Math.abs(sample - word.startSample) < 0.02 * audio.sampleRate),
        `word ${index} at ${word.startSample} is near an eSpeak phoneme`,
      );
      assert.ok(rmsOf(audio.samples, word.startSample, word.endSample) > 0.01, `word ${index} is audible`);
    }
    const phonemes = audio.timing?.phonemes ?? [];
    assert.equal(phonemes.at(-1)?.endSample, audio.samples.length, 'the final pause reaches the end');
  });

  it('a word eSpeak speaks in parts ("AT&T", "1234") lasts until its last part', async () => {
    const text = 'Call AT&T now about 1234 apples today';
    const audio = await espeak.synthesize(text, { voice: 'espeak:en-us', speed: 1, signal: live() });
    const words = audio.timing?.words ?? [];
    assert.deepEqual(
      words.map((w) => text.slice(w.start, w.end)),
      ['Call', 'AT&T', 'now', 'about', '1234', 'apples', 'today'],
    );
    for (const name of ['AT&T', '1234']) {
      const index = words.findIndex((w) => text.slice(w.start, w.end) === name);
      const word = words[index];
      const next = words[index + 1];
      assert.ok(word && next);
      const gap = (next.startSample - word.endSample) / audio.sampleRate;
      assert.ok(gap >= 0 && gap < 0.1, `"${name}" ends ${gap.toFixed(3)} s before the next word`);
    }
  });

  it('scales the words with the speed', async () => {
    const text = 'The quick brown fox jumps over the lazy dog.';
    const at = async (speed: number) =>
      (await espeak.synthesize(text, { voice: 'espeak:en-us', speed, signal: live() })).timing?.words ?? [];
    const [slow, natural, fast] = await Promise.all([at(0.5), at(1), at(2)]);
    const lastStart = (words: typeof natural) => words.at(-1)?.startSample ?? 0;
    assert.equal(slow.length, 9);
    assert.equal(fast.length, 9);
    const slower = lastStart(slow) / lastStart(natural);
    const faster = lastStart(fast) / lastStart(natural);
    assert.ok(slower > 1.6 && slower < 2.6, `speed 0.5: ${slower}`);
    assert.ok(faster > 0.4 && faster < 0.65, `speed 2: ${faster}`);
  });
});

describe('word and viseme timing on every chunk', () => {
  let t: TestServer;
  before(async () => {
    t = await startServerWithEngines({ security: { rate_limit: { enabled: false } } });
  });
  after(() => t?.stop());

  const TEXT = 'Good morning! Your table for four is ready, at 7:30 tonight. Enjoy your meal.';
  const speak = async (config: { sampleRateHz?: number; speed?: number }) => {
    const responses: SynthesizeResponse[] = [];
    for await (const response of t.client.synthesis.synthesizeText({
      text: TEXT,
      config: { voice: 'espeak:en-us', encoding: AudioEncoding.LINEAR16, ...config },
    }))
      responses.push(response);
    return responses;
  };
  const pcmOf = (responses: readonly SynthesizeResponse[]) => {
    const bytes = Buffer.concat(responses.map((r) => r.audio));
    const out = new Float32Array(bytes.length >> 1);
    for (let i = 0; i < out.length; i++) out[i] = bytes.readInt16LE(2 * i) / 32768;
    return out;
  };

  /** Checks the invariants of one call's chunks; returns its distinct words in order. */
  const checkCall = (responses: readonly SynthesizeResponse[]) => {
    const samples = pcmOf(responses);
    const codePoints = [...TEXT];
    const words = new Map<string, { start: number; end: number; text: string; span: [number, number] }>();
    let visemeEnd = 0;
    for (const r of responses) {
      const chunkStart = Number(r.sampleOffset);
      const chunkEnd = chunkStart + r.sampleCount;
      assert.ok(
        r.words.length > 0 || r.sampleCount < 0.3 * (r.format?.sampleRateHz ?? 1),
        'a chunk of speech has words',
      );
      for (const w of r.words) {
        const start = Number(w.startSample);
        const end = Number(w.endSample);
        assert.ok(start < chunkEnd && end > chunkStart, 'a word listed on a chunk overlaps it');
        assert.equal(w.text, codePoints.slice(w.textSpan?.start, w.textSpan?.end).join(''));
        words.set(`${start}`, {
          start,
          end,
          text: w.text,
          span: [w.textSpan?.start ?? 0, w.textSpan?.end ?? 0],
        });
      }
      for (const v of r.visemes) {
        const start = Number(v.startSample);
        const end = Number(v.endSample);
        assert.ok(start < chunkEnd && end > chunkStart, 'a viseme listed on a chunk overlaps it');
        assert.ok(OCULUS_VISEMES.includes(v.oculusViseme as never) && v.visemeId <= 21);
        if (start >= visemeEnd) {
          assert.equal(start, visemeEnd, 'visemes are back to back');
          visemeEnd = end;
        }
      }
    }
    assert.equal(visemeEnd, samples.length, 'visemes cover the audio');
    const ordered = [...words.values()].sort((a, b) => a.start - b.start);
    for (const [i, w] of ordered.entries()) {
      assert.ok(i === 0 || w.start >= (ordered[i - 1]?.end ?? 0), 'words do not overlap');
      assert.ok(rmsOf(samples, w.start, w.end) > 0.01, `"${w.text}" is audible in the output`);
    }
    return ordered;
  };

  it('carries words whose spans index the input, and visemes covering the audio, at every rate and speed', async () => {
    const native = checkCall(await speak({}));
    assert.deepEqual(
      native.map((w) => w.text),
      [
        'Good',
        'morning',
        'Your',
        'table',
        'for',
        'four',
        'is',
        'ready',
        'at',
        '7',
        '30',
        'tonight',
        'Enjoy',
        'your',
        'meal',
      ],
    );
    for (const rate of [16_000, 48_000]) {
      const resampled = checkCall(await speak({ sampleRateHz: rate }));
      assert.deepEqual(
        resampled.map((w) => w.span),
        native.map((w) => w.span),
      );
      for (const [i, w] of resampled.entries()) {
        const expected = ((native[i]?.start ?? 0) * rate) / 22_050;
        // eSpeak's audio varies by a few ms from call to call (its pitch flutter runs on).
        assert.ok(
          Math.abs(w.start - expected) < 0.03 * rate,
          `${rate} Hz "${w.text}": ${w.start} vs ${expected}`,
        );
      }
    }
    const fast = checkCall(await speak({ speed: 1.8 }));
    const ratio = (fast.at(-1)?.start ?? 0) / (native.at(-1)?.start ?? 1);
    assert.ok(ratio > 0.45 && ratio < 0.7, `speed 1.8 moves the last word to ${ratio} of its time`);
  });
});
