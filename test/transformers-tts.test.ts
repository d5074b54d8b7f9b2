import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TransformersSynthesizer } from '../server/engines/transformers-tts.js';
import {
  createTransformersSynthesizer,
  type TransformersLoadReport,
} from '../server/engines/transformers-tts.js';
import { Reason, VoiceError } from '../server/errors.js';
import { generateVitsModel, vitsModelFiles } from './fixtures/vits-model.js';

const modelId = 'cortex-test/tiny-vits';
const multiSpeakerId = 'cortex-test/tiny-vits-2spk';
const missingId = 'cortex-test/not-there';
const samplingRate = 22_050;
const samplesPerToken = 300;

function rms(samples: Float32Array): number {
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  return Math.sqrt(sum / Math.max(1, samples.length));
}

/** Zero crossings per second: a pitch estimate good enough to tell two tones apart. */
function crossingRate(samples: Float32Array, rate: number): number {
  let crossings = 0;
  for (let i = 1; i < samples.length; i++) {
    if ((samples[i - 1] ?? 0) < 0 !== (samples[i] ?? 0) < 0) crossings++;
  }
  return (crossings * rate) / samples.length;
}

const options = { speed: 1, signal: new AbortController().signal };

/** The reason of a VoiceError, undefined for any other error. */
function reasonOf(error: unknown): string | undefined {
  return error instanceof VoiceError ? error.reason : undefined;
}

describe('transformers VITS synthesizer on a generated model', () => {
  let root: string;
  let engine: TransformersSynthesizer;
  let report: TransformersLoadReport;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cortex-vits-'));
    await generateVitsModel({ root, modelId, samplingRate, samplesPerToken });
    await generateVitsModel({ root, modelId: multiSpeakerId, samplingRate, samplesPerToken, numSpeakers: 2 });
    engine = createTransformersSynthesizer({
      cacheDir: root,
      allowRemote: false,
      threads: 1,
      models: [
        { id: modelId, language: 'en' },
        { id: missingId, language: 'fr' },
        { id: multiSpeakerId, language: 'en', speaker: '0' },
        { id: multiSpeakerId, language: 'en', speaker: '1' },
        { id: multiSpeakerId, language: 'en', speaker: '7' },
      ],
    });
    const started = performance.now();
    report = await engine.load();
    console.log(`load of 2 generated models: ${(performance.now() - started).toFixed(1)} ms`);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('lists the loaded voices with stable ids and the sample rate from config.json', () => {
    const ids = engine.voices().map((voice) => voice.id);
    assert.deepEqual(ids, [`vits:${modelId}`, `vits:${multiSpeakerId}:0`, `vits:${multiSpeakerId}:1`]);
    const voice = engine.voices()[0];
    assert.equal(voice?.engine, 'transformers');
    assert.equal(voice?.model, modelId);
    assert.equal(voice?.language, 'en');
    assert.equal(voice?.speaker, '');
    assert.equal(voice?.sampleRate, samplingRate);
    assert.deepEqual(report.voices, engine.voices());
  });

  test('reports a missing model folder with its id and the folder expected, without throwing', () => {
    const missing = report.unavailable.find((entry) => entry.model === missingId);
    assert.ok(missing, 'the missing model is reported');
    assert.equal(missing.folder, join(root, 'cortex-test', 'not-there'));
    assert.match(missing.reason, /config\.json/);
    assert.ok(!engine.voices().some((voice) => voice.model === missingId));
  });

  test('reports a speaker the model does not have', () => {
    const bad = report.unavailable.find((entry) => entry.model === multiSpeakerId);
    assert.match(bad?.reason ?? '', /speaker "7".*2 speaker/);
  });

  test('load runs once and returns the same report', async () => {
    assert.equal(await engine.load(), report);
  });

  test('speaks non-silent audio whose length grows with the text', async () => {
    const voice = `vits:${modelId}`;
    const short = 'Hello.';
    const long = 'Hello there, this is a much longer sentence.';
    const times: number[] = [];
    const timed = async (text: string) => {
      const started = performance.now();
      const audio = await engine.synthesize(text, { ...options, voice });
      times.push(performance.now() - started);
      return audio;
    };
    const a = await timed(short);
    const b = await timed(long);
    console.log(`synthesis: ${times.map((ms) => ms.toFixed(1)).join(' ms, ')} ms`);

    assert.equal(a.sampleRate, samplingRate);
    assert.equal(b.sampleRate, samplingRate);
    assert.ok(rms(a.samples) > 0.1, `short RMS ${rms(a.samples)}`);
    assert.ok(rms(b.samples) > 0.1, `long RMS ${rms(b.samples)}`);
    // The tokenizer keeps letters, digits, space, ' and -, and puts a blank around each character.
    const tokens = (text: string) =>
      2 *
        text
          .toLowerCase()
          .replace(/[^ '\-0-9a-z]/g, '')
          .trim().length +
      1;
    assert.equal(a.samples.length, tokens(short) * samplesPerToken);
    assert.equal(b.samples.length, tokens(long) * samplesPerToken);
    assert.ok(b.samples.length > 5 * a.samples.length);
  });

  test('text with nothing speakable gives empty audio', async () => {
    const audio = await engine.synthesize('!?…', { ...options, voice: `vits:${modelId}` });
    assert.equal(audio.samples.length, 0);
    assert.equal(audio.sampleRate, samplingRate);
  });

  test('passes the speaker to a multi-speaker model', async () => {
    const text = 'aaaa';
    const zero = await engine.synthesize(text, { ...options, voice: `vits:${multiSpeakerId}:0` });
    const one = await engine.synthesize(text, { ...options, voice: `vits:${multiSpeakerId}:1` });
    assert.equal(zero.samples.length, one.samples.length);
    // Speaker 1 is pitched 60 Hz above speaker 0.
    assert.ok(crossingRate(one.samples, samplingRate) > crossingRate(zero.samples, samplingRate) + 60);
  });

  test('rejects an unknown voice, listing the valid ids', async () => {
    await assert.rejects(engine.synthesize('hi', { ...options, voice: 'vits:nope' }), (error: unknown) => {
      assert.equal(reasonOf(error), Reason.UnknownResource);
      const message = (error as VoiceError).rawMessage;
      assert.match(message, /vits:nope/);
      assert.match(
        message,
        new RegExp(`vits:${modelId}, vits:${multiSpeakerId}:0, vits:${multiSpeakerId}:1`),
      );
      return true;
    });
  });

  test('rejects with CANCELLED when the signal has aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(
      engine.synthesize('hi', { speed: 1, signal: controller.signal, voice: `vits:${modelId}` }),
      (error: unknown) => reasonOf(error) === Reason.Cancelled,
    );
  });
});

test('an engine whose load() has not run reports ENGINE_UNAVAILABLE', async () => {
  const engine = createTransformersSynthesizer({
    cacheDir: tmpdir(),
    allowRemote: false,
    threads: 1,
    models: [],
  });
  await assert.rejects(
    engine.synthesize('hi', { ...options, voice: 'vits:x' }),
    (error: unknown) => reasonOf(error) === Reason.EngineUnavailable,
  );
});

test('the generator writes the same bytes every time', async () => {
  const root = await mkdtemp(join(tmpdir(), 'cortex-vits-det-'));
  try {
    const first = await generateVitsModel({ root: join(root, 'a') });
    const second = await generateVitsModel({ root: join(root, 'b') });
    assert.deepEqual(first.files, [
      'config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'onnx/model.onnx',
    ]);
    for (const file of first.files) {
      const a = await readFile(join(first.folder, file));
      const b = await readFile(join(second.folder, file));
      assert.ok(a.length > 0);
      assert.ok(a.equals(b), `${file} differs between runs`);
    }
    const other = vitsModelFiles({ samplesPerToken: 200 }).get('onnx/model.onnx');
    assert.ok(
      other !== undefined &&
        !Buffer.from(other).equals(await readFile(join(first.folder, 'onnx/model.onnx'))),
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
