import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { AudioEncoding, Code, type TranscriptionConfigSchema } from '../clients/node/index.js';
import { expectError } from './helpers/errors.js';
import { type TestModels, testModels } from './helpers/models.js';
import { concat, RATE, silence, speak, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

type ConfigInit = MessageInitShape<typeof TranscriptionConfigSchema>;
type RequestInit = { request: { case: 'config'; value: ConfigInit } | { case: 'audio'; value: Uint8Array } };

const LINEAR16_16K = { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 };

/** English streams go to the English model (Moonshine), others and "auto" to the multilingual one. */
describe('the model each stream goes to', () => {
  let t: TestServer;
  let models: TestModels;
  let clip: Uint8Array;

  before(async () => {
    models = await testModels();
    t = await startServerWithEngines({ performance: { workers: 1 } });
    clip = toLinear16(concat(silence(0.3), speak('Good morning, everyone.'), silence(0.8)));
  });
  after(() => t.stop());

  async function finalsOf(config: { language: string; model?: string }) {
    const results = [];
    const requests = (async function* (): AsyncGenerator<RequestInit> {
      yield { request: { case: 'config', value: { audioFormat: LINEAR16_16K, ...config } } };
      yield { request: { case: 'audio', value: clip } };
    })();
    for await (const response of t.client.transcription.transcribe(requests)) {
      if (response.event.case === 'result' && response.event.value.isFinal)
        results.push(response.event.value);
    }
    return results;
  }

  it('sends English to the English model', async () => {
    const [result] = await finalsOf({ language: 'en' });
    assert.equal(result?.model, models.moonshine.modelId);
    assert.equal(result?.language, 'en');
    assert.equal(result?.text, models.moonshine.text);
  });

  it('sends "auto" and other languages to the multilingual model', async () => {
    const [auto] = await finalsOf({ language: 'auto' });
    assert.equal(auto?.model, models.whisper.modelId);
    const [german] = await finalsOf({ language: 'de' });
    assert.equal(german?.model, models.whisper.modelId);
    assert.equal(german?.language, 'de');
  });

  it('lets a stream pick a model from the allow-list, and refuses a language the model lacks', async () => {
    const [whisperInEnglish] = await finalsOf({ language: 'en', model: models.whisper.modelId });
    assert.equal(whisperInEnglish?.model, models.whisper.modelId);
    const german = await expectError(finalsOf({ language: 'de', model: models.moonshine.modelId }));
    assert.equal(german.code, Code.InvalidArgument);
    assert.match(german.rawMessage, /language: model "[^"]+" is English-only/);
    const unknown = await expectError(finalsOf({ language: 'en', model: 'someone/else' }));
    assert.equal(unknown.code, Code.InvalidArgument);
    assert.match(unknown.rawMessage, /config\.model: "someone\/else" is not offered; allowed: /);
  });
});

describe('a configured English model that is missing', () => {
  let t: TestServer;
  let models: TestModels;

  before(async () => {
    models = await testModels();
    t = await startServerWithEngines({
      models: {
        cache_dir: models.cacheDir,
        stt: { model: models.whisper.modelId, english_model: 'cortex-test/not-installed', dtype: 'fp32' },
      },
      performance: { workers: 1 },
    });
  });
  after(() => t.stop());

  it('sends English to the multilingual model and keeps Transcription serving', async () => {
    const recognizer = t.server.engines.recognizer.require();
    assert.equal(recognizer.englishModel, undefined);
    assert.match(recognizer.unavailableModels?.['cortex-test/not-installed'] ?? '', /is not installed/);
    const clip = toLinear16(concat(silence(0.3), speak('Hello there.'), silence(0.8)));
    const requests = (async function* (): AsyncGenerator<RequestInit> {
      yield { request: { case: 'config', value: { audioFormat: LINEAR16_16K, language: 'en' } } };
      yield { request: { case: 'audio', value: clip } };
    })();
    const answeredBy: string[] = [];
    for await (const response of t.client.transcription.transcribe(requests)) {
      if (response.event.case === 'result') answeredBy.push(response.event.value.model);
    }
    assert.deepEqual(answeredBy, [models.whisper.modelId]);
  });
});
