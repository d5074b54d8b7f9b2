import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  normalizeInstalledConfig,
  normalizeModelConfig,
  readModelConfig,
} from '../server/engines/asr-model-config.js';
import { moonshineTokenBudget, type TransformersRecognizer } from '../server/engines/transformers-asr.js';
import { Reason, VoiceError } from '../server/errors.js';
import { type GeneratedMoonshineModel, generateMoonshineModel } from './fixtures/moonshine-model.js';
import { seededRandom } from './helpers/random.js';
import { localRecognizer, recognizeOptions } from './helpers/recognizer.js';

/** Seeded noise of the given length in seconds at 16 kHz (the generated models say their text for any audio). */
function seconds(length: number): Float32Array {
  const random = seededRandom(7);
  return Float32Array.from({ length: Math.round(length * 16_000) }, () => (random() - 0.5) * 0.2);
}

describe('Moonshine through the library ASR pipeline, on generated models', () => {
  let root: string;
  let model: GeneratedMoonshineModel;
  let long: GeneratedMoonshineModel;
  let legacy: GeneratedMoonshineModel;
  let recognizer: TransformersRecognizer;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'moonshine-asr-'));
    model = await generateMoonshineModel({ root, text: 'hello from the moon' });
    long = await generateMoonshineModel({
      root,
      modelId: 'cortex-test/moonshine-long-script',
      text: 'one two three four five six seven eight nine ten eleven twelve',
    });
    legacy = await generateMoonshineModel({
      root,
      modelId: 'cortex-test/moonshine-legacy-config',
      text: 'old keys still work',
      legacyConfig: true,
    });
    recognizer = localRecognizer(root, model.modelId, [long.modelId, legacy.modelId]);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('says the scripted text, in English, for short and long utterances', async () => {
    for (const length of [0.03, 0.4, 3, 12]) {
      const result = await recognizer.recognize(seconds(length), recognizeOptions());
      assert.deepEqual(
        result,
        { text: 'hello from the moon', language: 'en', model: model.modelId, segments: [], words: [] },
        `${length} s`,
      );
    }
    assert.equal(recognizer.familyOf(model.modelId), 'moonshine');
  });

  it('budgets output tokens from the utterance length, so a short utterance is not cut to nothing', async () => {
    assert.equal(moonshineTokenBudget(8000), 7, 'half a second: 3 + 4 tokens (the library would give 0)');
    assert.equal(moonshineTokenBudget(16_000), 10);
    assert.equal(moonshineTokenBudget(30 * 16_000), 184);
    // The 12-word script needs 13 steps with its end token: 0.5 s allows 7, 2 s allows 16.
    const short = await recognizer.recognize(seconds(0.5), recognizeOptions({ model: long.modelId }));
    assert.equal(short.text, 'one two three four five six seven');
    const enough = await recognizer.recognize(seconds(2), recognizeOptions({ model: long.modelId }));
    assert.equal(enough.text, long.text);
  });

  it('gives one segment spanning the utterance when segments or words are asked for', async () => {
    const result = await recognizer.recognize(seconds(1.5), recognizeOptions({ timestamps: 'word' }));
    assert.deepEqual(result.segments, [{ text: 'hello from the moon', startMs: 0, endMs: 1500 }]);
    assert.deepEqual(result.words, []);
  });

  it('is English-only: another language is refused naming the field, auto and en are English', async () => {
    const auto = await recognizer.recognize(seconds(1), recognizeOptions({ language: 'auto' }));
    assert.equal(auto.language, 'en');
    await assert.rejects(
      recognizer.recognize(seconds(1), recognizeOptions({ language: 'de' })),
      (error: unknown) =>
        error instanceof VoiceError &&
        error.reason === Reason.InvalidArgument &&
        /language: model "cortex-test\/moonshine-minimal-random" is English-only/.test(error.message),
    );
  });

  it('loads a published-style config.json with the old key names, normalised in memory', async () => {
    const before = await readFile(join(legacy.folder, 'config.json'), 'utf8');
    const result = await recognizer.recognize(seconds(1), recognizeOptions({ model: legacy.modelId }));
    assert.equal(result.text, 'old keys still work');
    assert.equal(
      await readFile(join(legacy.folder, 'config.json'), 'utf8'),
      before,
      'the folder is not written',
    );
  });

  it('normalises an installed config.json on disk, once', async () => {
    const installed = await generateMoonshineModel({
      root,
      modelId: 'cortex-test/moonshine-installed',
      legacyConfig: true,
    });
    const original = await readModelConfig(installed.folder);
    assert.equal(original.decoder_num_hidden_layers, undefined);
    assert.equal(await normalizeInstalledConfig(installed.folder), true);
    const rewritten = await readModelConfig(installed.folder);
    assert.equal(rewritten.encoder_num_hidden_layers, original.num_hidden_layers);
    assert.equal(rewritten.decoder_num_hidden_layers, original.num_hidden_layers);
    assert.equal(rewritten.encoder_num_key_value_heads, original.num_key_value_heads);
    assert.equal(rewritten.decoder_num_key_value_heads, original.num_key_value_heads);
    assert.equal(await normalizeInstalledConfig(installed.folder), false, 'nothing left to change');
    const fresh = localRecognizer(root, installed.modelId);
    assert.equal((await fresh.recognize(seconds(1), recognizeOptions())).text, installed.text);
  });

  it('leaves Whisper configs and configs that already have the new keys alone', () => {
    const whisper = { model_type: 'whisper', num_hidden_layers: 4 };
    assert.deepEqual(normalizeModelConfig(whisper), { config: whisper, changed: false });
    const current = {
      model_type: 'moonshine',
      encoder_num_hidden_layers: 6,
      decoder_num_hidden_layers: 6,
      encoder_num_attention_heads: 8,
      decoder_num_attention_heads: 8,
      encoder_num_key_value_heads: 8,
      decoder_num_key_value_heads: 8,
      num_hidden_layers: 99,
    };
    assert.equal(normalizeModelConfig(current).changed, false);
  });
});
