import assert from 'node:assert/strict';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createEspeakSynthesizer } from '../server/engines/espeak-ng.js';
import { loadKokoroModel } from '../server/engines/kokoro-model.js';
import type { KokoroPhrase } from '../server/engines/kokoro-phonemes.js';
import { splitRuns, styleRow, tokenize } from '../server/engines/kokoro-tokens.js';
import { createKokoroSynthesizer, type KokoroSynthesizer } from '../server/engines/kokoro-tts.js';
import type { SynthesizedAudio } from '../server/engines/types.js';
import { Reason, VoiceError } from '../server/errors.js';
import { generateKokoroModel, KOKORO_FIXTURE_RATE, SAMPLES_PER_FRAME } from './fixtures/kokoro-model.js';
import { rms } from './helpers/speech.js';

const MODEL = 'cortex-test/tiny-kokoro';
const SENTENCE = 'Hello world, this is a short test of the neural voice.';
const signal = new AbortController().signal;

const engineFor = (
  root: string,
  model = MODEL,
  extra: { maxTokensPerRun?: number; voices?: string[] } = {},
) =>
  createKokoroSynthesizer({
    cacheDir: root,
    model,
    dtype: 'fp32',
    voices: extra.voices ?? ['af_heart', 'bm_george'],
    threads: 1,
    ...(extra.maxTokensPerRun === undefined ? {} : { maxTokensPerRun: extra.maxTokensPerRun }),
  });

const espeak = createEspeakSynthesizer();

/**
 * The words eSpeak times in `text`: the words of the text, less those eSpeak folds into the word
 * before ("of the" is one word event), which Kokoro's timing inherits from its phonemes.
 */
async function wordsOf(text: string): Promise<string[]> {
  const audio = await espeak.synthesize(text, { voice: 'espeak:en-us', speed: 1, signal });
  return audio.timing?.words.map((w) => text.slice(w.start, w.end)) ?? [];
}

async function checkTiming(audio: SynthesizedAudio, text: string): Promise<void> {
  const timing = audio.timing;
  assert.ok(timing, 'the timestamped export gives timing');
  assert.deepEqual(
    timing.words.map((w) => text.slice(w.start, w.end)),
    await wordsOf(text),
    'one timed word per word eSpeak says, in order',
  );
  let previousEnd = 0;
  for (const word of timing.words) {
    const label = text.slice(word.start, word.end);
    assert.ok(word.startSample < word.endSample, `${label}: starts before it ends`);
    assert.ok(word.startSample >= previousEnd, `${label}: after the word before`);
    assert.ok(word.endSample <= audio.samples.length, `${label}: within the audio`);
    assert.ok(rms(audio.samples.subarray(word.startSample, word.endSample)) > 0.1, `${label}: not silent`);
    previousEnd = word.endSample;
  }
  // Phonemes tile the audio from its first sample to its last.
  assert.equal(timing.phonemes[0]?.startSample, 0);
  assert.equal(timing.phonemes.at(-1)?.endSample, audio.samples.length);
  for (const [index, phoneme] of timing.phonemes.entries()) {
    assert.ok(phoneme.startSample < phoneme.endSample);
    if (index > 0) assert.equal(phoneme.startSample, timing.phonemes[index - 1]?.endSample);
  }
}

describe('Kokoro synthesizer on a generated Kokoro-shaped model', () => {
  let root: string;
  let engine: KokoroSynthesizer;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cortex-kokoro-'));
    await generateKokoroModel({ root, modelId: MODEL });
    engine = engineFor(root, MODEL, { voices: ['af_heart', 'bm_george', 'af_missing'] });
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('lists its voices as kokoro:<voice> at 24 kHz with the language of the voice name', async () => {
    const report = await engine.load();
    assert.deepEqual(
      report.voices.map((v) => [v.id, v.language, v.sampleRate, v.engine, v.model, v.speaker]),
      [
        ['kokoro:af_heart', 'en-US', 24_000, 'kokoro', MODEL, 'af_heart'],
        ['kokoro:bm_george', 'en-GB', 24_000, 'kokoro', MODEL, 'bm_george'],
      ],
    );
    assert.equal(report.voices[0]?.name, 'Heart (Kokoro, female)');
    assert.equal(report.unavailable.length, 1);
    assert.equal(report.unavailable[0]?.what, 'kokoro:af_missing');
    assert.match(
      report.unavailable[0]?.reason ?? '',
      /voices\/af_missing\.bin; install it with 'voice models pull'/,
    );
  });

  test('speaks a sentence with a timed, non-silent span for every word', async () => {
    await engine.load();
    const audio = await engine.synthesize(SENTENCE, { voice: 'kokoro:af_heart', speed: 1, signal });
    assert.equal(audio.sampleRate, KOKORO_FIXTURE_RATE);
    assert.equal(audio.samples.length % SAMPLES_PER_FRAME, 0, 'whole frames of 600 samples');
    await checkTiming(audio, SENTENCE);
    const ipa = audio.timing?.phonemes.map((p) => p.ipa).filter((p) => p !== '') ?? [];
    assert.deepEqual(ipa.slice(0, 4), ['h', 'ə', 'l', 'ˈoʊ'], 'eSpeak’s IPA for "hello"');
    assert.ok(
      audio.timing?.phonemes.some((p) => p.ipa === ''),
      'the comma and the pad tokens are pauses',
    );
    const british = await engine.synthesize(SENTENCE, { voice: 'kokoro:bm_george', speed: 1, signal });
    await checkTiming(british, SENTENCE);
  });

  test('speed 2 is the model’s own input: half the frames, the same words', async () => {
    await engine.load();
    const normal = await engine.synthesize(SENTENCE, { voice: 'kokoro:af_heart', speed: 1, signal });
    const fast = await engine.synthesize(SENTENCE, { voice: 'kokoro:af_heart', speed: 2, signal });
    assert.equal(fast.samples.length * 2, normal.samples.length);
    await checkTiming(fast, SENTENCE);
    const spans = (audio: SynthesizedAudio) =>
      audio.timing?.words.map((w) => w.endSample - w.startSample) ?? [];
    assert.deepEqual(
      spans(fast).map((span) => span * 2),
      spans(normal),
    );
    await assert.rejects(
      engine.synthesize(SENTENCE, { voice: 'kokoro:af_heart', speed: 3, signal }),
      (error: unknown) => error instanceof VoiceError && error.reason === Reason.InvalidArgument,
    );
  });

  test('a text longer than one run is spoken in runs cut between words and joined', async () => {
    await engine.load();
    const long = Array.from(
      { length: 24 },
      (_, i) => `Sentence number ${i + 1} carries a few more words`,
    ).join(', ');
    const whole = await engine.synthesize(long, { voice: 'kokoro:af_heart', speed: 1, signal });
    await checkTiming(whole, long);
    // More than 512 tokens in one run is refused by the model, as by the real one.
    const model = await loadKokoroModel({
      folder: join(root, MODEL),
      dtype: 'fp32',
      voices: ['af_heart'],
      threads: 1,
    });
    const style = new Float32Array(256);
    await assert.rejects(model.model.run(new BigInt64Array(513).fill(5n), style, 1));
    await model.model.run(new BigInt64Array(512).fill(5n), style, 1);
    await model.model.release();
    // A token lasts at most 6 frames, so this many samples means more than 512 tokens.
    assert.ok(whole.samples.length > 513 * 6 * SAMPLES_PER_FRAME, 'the text is longer than one run');

    const split = engineFor(root, MODEL, { maxTokensPerRun: 40 });
    await split.load();
    const runs = await split.synthesize(long, { voice: 'kokoro:af_heart', speed: 1, signal });
    await checkTiming(runs, long);
    // Each run adds two pad tokens of 2 frames each; nothing else changes.
    const extra = runs.samples.length - whole.samples.length;
    assert.ok(extra > 0 && extra % (4 * SAMPLES_PER_FRAME) === 0, `${extra} extra samples`);
  });

  test('stops between runs when the call is aborted', async () => {
    const split = engineFor(root, MODEL, { maxTokensPerRun: 2 });
    await split.load();
    const text = Array.from({ length: 12 }, (_, i) => `Part ${i + 1} of a long answer`).join(', ');
    let started = performance.now();
    await split.synthesize(text, { voice: 'kokoro:af_heart', speed: 1, signal });
    const fullMs = performance.now() - started;
    const controller = new AbortController();
    let abortedAt = 0;
    started = performance.now();
    const call = split.synthesize(text, { voice: 'kokoro:af_heart', speed: 1, signal: controller.signal });
    // The engine's first step is a setImmediate; the abort lands two later, while runs are spoken.
    setImmediate(() =>
      setImmediate(() => {
        abortedAt = performance.now();
        controller.abort();
      }),
    );
    await assert.rejects(
      call,
      (error: unknown) => error instanceof VoiceError && error.reason === Reason.Cancelled,
    );
    const stopMs = performance.now() - abortedAt;
    assert.ok(
      stopMs < fullMs / 5,
      `stopped ${stopMs.toFixed(1)} ms after the abort (${(abortedAt - started).toFixed(1)} ms in); a whole call takes ${fullMs.toFixed(1)} ms`,
    );
    await assert.rejects(
      split.synthesize(text, { voice: 'kokoro:af_heart', speed: 1, signal: AbortSignal.abort() }),
      (error: unknown) => error instanceof VoiceError && error.reason === Reason.Cancelled,
    );
  });

  test('refuses a voice it does not have, naming the ones it has', async () => {
    await engine.load();
    await assert.rejects(
      engine.synthesize('hi', { voice: 'kokoro:af_missing', speed: 1, signal }),
      (error: unknown) =>
        error instanceof VoiceError &&
        error.reason === Reason.UnknownResource &&
        /unknown Kokoro voice "kokoro:af_missing"; Kokoro voices: kokoro:af_heart, kokoro:bm_george/.test(
          error.rawMessage,
        ),
    );
  });
});

describe('Kokoro tokens', () => {
  const phrase: KokoroPhrase = {
    words: [
      { start: 0, end: 2 },
      { start: 3, end: 5 },
    ],
    pieces: [
      { text: 'ʔa', word: 0, spoken: true },
      { text: ', ', word: undefined, spoken: false },
      { text: 'bi', word: 1, spoken: true },
    ],
  };
  const vocab = new Map([...'a, bi'].map((c, i) => [c, i + 1] as const));

  test('drops symbols outside the vocab and says which', () => {
    const { tokens, dropped } = tokenize(phrase, vocab);
    assert.deepEqual(dropped, ['ʔ']);
    assert.deepEqual(
      tokens.map((t) => t.piece),
      [0, 1, 1, 2, 2],
    );
  });

  test('cuts runs after punctuation, and picks the style row of the run’s length', () => {
    const { tokens } = tokenize(phrase, vocab);
    assert.deepEqual(
      splitRuns(tokens, phrase, 4).map((run) => run.length),
      [3, 2],
    );
    assert.deepEqual(
      splitRuns(tokens, phrase, 1).map((run) => run.length),
      [1, 1, 1, 1, 1],
    );
    assert.equal(styleRow(0, 510), 0);
    assert.equal(styleRow(37, 510), 37);
    assert.equal(styleRow(600, 510), 509);
  });
});

describe('Kokoro model folders that cannot serve', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cortex-kokoro-bad-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  const reasonOf = async (model: string, voices = ['af_heart']) => {
    const report = await engineFor(root, model, { voices }).load();
    assert.deepEqual(report.voices, []);
    return report.unavailable.map((u) => `${u.what}: ${u.reason}`).join('\n');
  };

  test('names the missing graph, vocab or voice file, and a voice file of the wrong size', async () => {
    assert.match(
      await reasonOf('cortex-test/absent'),
      /^cortex-test\/absent: Kokoro model folder .*cortex-test\/absent lacks onnx\/model\.onnx \(dtype fp32\); install it with 'voice models pull'$/,
    );
    const noVocab = await generateKokoroModel({ root, modelId: 'cortex-test/no-vocab' });
    await unlink(join(noVocab.folder, 'tokenizer.json'));
    assert.match(await reasonOf(noVocab.modelId), /has no vocab \(no tokenizer\.json, no config\.json\)/);

    const badVoice = await generateKokoroModel({ root, modelId: 'cortex-test/bad-voice' });
    await writeFile(join(badVoice.folder, 'voices', 'af_heart.bin'), new Uint8Array(1000));
    const reason = await reasonOf(badVoice.modelId);
    assert.match(
      reason,
      /af_heart\.bin is 1000 bytes; a Kokoro voice file is 510 × 256 float32 \(522240 bytes\)/,
    );
  });

  test('refuses a graph without Kokoro’s inputs, naming what it has', async () => {
    const foreign = await generateKokoroModel({ root, modelId: 'cortex-test/foreign', speedInput: 'rate' });
    assert.match(
      await reasonOf(foreign.modelId),
      /is not a Kokoro graph: it takes input_ids, style, rate and gives waveform, durations; Kokoro takes input_ids, style, speed/,
    );
  });

  test('accepts waveform [T] with float durations, and an export without durations (no timing)', async () => {
    const flat = await generateKokoroModel({
      root,
      modelId: 'cortex-test/flat',
      waveformRank: 1,
      durations: 'float32',
    });
    const flatEngine = engineFor(root, flat.modelId);
    assert.equal((await flatEngine.load()).voices.length, 2);
    const audio = await flatEngine.synthesize(SENTENCE, { voice: 'kokoro:af_heart', speed: 1, signal });
    await checkTiming(audio, SENTENCE);

    const plain = await generateKokoroModel({ root, modelId: 'cortex-test/plain', durations: 'none' });
    const plainEngine = engineFor(root, plain.modelId);
    await plainEngine.load();
    const untimed = await plainEngine.synthesize(SENTENCE, { voice: 'kokoro:af_heart', speed: 1, signal });
    assert.equal(untimed.samples.length, audio.samples.length);
    assert.equal(untimed.timing, undefined);
  });
});
