import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { TransformersRecognizer } from '../server/engines/transformers-asr.js';
import { Reason, VoiceError } from '../server/errors.js';
import {
  type GeneratedWhisperModel,
  generateWhisperModel,
  whisperModelFiles,
} from './fixtures/whisper-model.js';
import { localRecognizer, recognizeOptions } from './helpers/recognizer.js';

const run = promisify(execFile);

/** Speech from eSpeak NG, resampled by sox to 16 kHz mono float samples. */
async function speak(text: string, folder: string): Promise<Float32Array> {
  const wav = join(folder, `speech-${Date.now()}.wav`);
  await run('espeak-ng', ['-w', wav, text]);
  const { stdout } = await run(
    'sox',
    [wav, '-r', '16000', '-c', '1', '-e', 'floating-point', '-b', '32', '-t', 'raw', '-'],
    {
      encoding: 'buffer',
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const bytes = Uint8Array.from(stdout);
  return new Float32Array(bytes.buffer, 0, bytes.byteLength / 4);
}

/**
 * Counts onnxruntime session runs: encoder runs take `input_features`, decoder runs `input_ids`.
 * Installed on the session prototype before any model loads, so runs the engine routes through its
 * own wrappers are counted too. `onEncoderRun` lets a test act right after an encoder pass.
 */
function countSessionRuns() {
  const { InferenceSession } = createRequire(import.meta.url)('onnxruntime-node') as {
    InferenceSession: {
      prototype: { run(feeds: Record<string, unknown>, ...rest: unknown[]): Promise<unknown> };
    };
  };
  const original = InferenceSession.prototype.run;
  const counts = {
    encoder: 0,
    decoder: 0,
    onEncoderRun: undefined as (() => void) | undefined,
    reset() {
      counts.encoder = 0;
      counts.decoder = 0;
      counts.onEncoderRun = undefined;
    },
    restore() {
      InferenceSession.prototype.run = original;
    },
  };
  InferenceSession.prototype.run = async function (this: unknown, feeds, ...rest) {
    const result = await original.call(this, feeds, ...rest);
    if ('input_features' in feeds) {
      counts.encoder++;
      counts.onEncoderRun?.();
    } else if ('input_ids' in feeds) counts.decoder++;
    return result;
  };
  return counts;
}

function reasonOf(expected: Reason, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof VoiceError, `expected a VoiceError, got ${String(error)}`);
    assert.equal(error.reason, expected);
    if (pattern !== undefined) assert.match(error.rawMessage, pattern);
    return true;
  };
}

describe('transformers Whisper recognizer on a generated tiny model', () => {
  let root: string;
  let model: GeneratedWhisperModel;
  let german: GeneratedWhisperModel;
  let recognizer: TransformersRecognizer;
  let speech: Float32Array;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'whisper-asr-'));
    model = await generateWhisperModel({ root, text: 'Hello world.' });
    german = await generateWhisperModel({
      root,
      modelId: 'cortex-test/whisper-tiny-german',
      text: 'Grüße aus Köln',
    });
    recognizer = localRecognizer(root, model.modelId, [german.modelId, 'cortex-test/not-installed']);
    speech = await speak('hello world', root);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('transcribes real speech to the text the model was generated with', async () => {
    assert.ok(speech.length > 8000, 'espeak-ng produced speech');
    const result = await recognizer.recognize(speech, recognizeOptions());
    assert.deepEqual(result, {
      text: 'Hello world.',
      language: 'en',
      model: model.modelId,
      segments: [],
      words: [],
    });
  });

  it('decodes non-ASCII text through the byte-level tokenizer', async () => {
    const result = await recognizer.recognize(
      speech,
      recognizeOptions({ model: german.modelId, language: 'de' }),
    );
    assert.equal(result.text, 'Grüße aus Köln');
    assert.equal(result.language, 'de');
    assert.equal(result.model, german.modelId);
  });

  it('returns the segment the model closes with timestamp tokens', async () => {
    const result = await recognizer.recognize(speech, recognizeOptions({ timestamps: 'segment' }));
    assert.equal(result.text, 'Hello world.');
    assert.deepEqual(result.segments, [{ text: 'Hello world.', startMs: 0, endMs: 1000 }]);
    assert.deepEqual(result.words, []);
  });

  it('returns ordered word timestamps inside the segment', async () => {
    const result = await recognizer.recognize(
      speech,
      recognizeOptions({ timestamps: 'word', language: 'fr' }),
    );
    assert.equal(result.text, 'Hello world.');
    assert.equal(result.language, 'fr');
    assert.deepEqual(
      result.words.map((word) => word.text),
      ['Hello', 'world.'],
    );
    let previousEnd = 0;
    for (const word of result.words) {
      assert.ok(
        word.startMs >= previousEnd - 20 && word.endMs >= word.startMs && word.endMs <= 1000,
        JSON.stringify(word),
      );
      previousEnd = word.endMs;
    }
    assert.equal(result.segments.length, 1);
  });

  it('rejects a language the model has no token for', async () => {
    await assert.rejects(
      recognizer.recognize(speech, recognizeOptions({ language: 'xx' })),
      reasonOf(Reason.InvalidArgument, /language: "xx".*\ben, zh, de\b/),
    );
  });

  it('names the model id and the folder when the model is not installed', async () => {
    const folder = join(root, 'cortex-test', 'not-installed');
    await assert.rejects(
      recognizer.recognize(speech, recognizeOptions({ model: 'cortex-test/not-installed' })),
      reasonOf(
        Reason.EngineUnavailable,
        new RegExp(`"cortex-test/not-installed".*${folder.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
      ),
    );
  });

  it('refuses a model outside the allow-list and names the allowed ones', async () => {
    await assert.rejects(
      recognizer.recognize(speech, recognizeOptions({ model: 'openai/whisper-large-v3' })),
      reasonOf(
        Reason.UnknownResource,
        new RegExp(`whisper-large-v3.*${model.modelId}, ${german.modelId}, cortex-test/not-installed`),
      ),
    );
  });

  it('stops decoding when the call is cancelled mid-way', async () => {
    const controller = new AbortController();
    const pending = recognizer.recognize(speech, recognizeOptions({ signal: controller.signal }));
    setImmediate(() => controller.abort());
    await assert.rejects(pending, reasonOf(Reason.Cancelled));
  });

  it('rejects audio longer than one 30 s Whisper pass', async () => {
    await assert.rejects(
      recognizer.recognize(new Float32Array(30 * 16_000 + 1), recognizeOptions()),
      reasonOf(Reason.LimitExceeded),
    );
  });
});

describe('Whisper test model generator', () => {
  it('writes the same bytes for the same options', async () => {
    const first = whisperModelFiles({ text: 'same text' });
    const second = whisperModelFiles({ text: 'same text' });
    assert.deepEqual([...first.files.keys()], [...second.files.keys()]);
    for (const [path, bytes] of first.files)
      assert.ok(Buffer.from(bytes).equals(Buffer.from(second.files.get(path) ?? [])), path);

    const roots = [
      await mkdtemp(join(tmpdir(), 'whisper-gen-a-')),
      await mkdtemp(join(tmpdir(), 'whisper-gen-b-')),
    ];
    try {
      const [a, b] = [
        await generateWhisperModel({ root: roots[0] as string }),
        await generateWhisperModel({ root: roots[1] as string }),
      ];
      assert.ok(a.files.includes('onnx/decoder_model_merged.onnx'));
      for (const file of a.files) {
        const [left, right] = await Promise.all([
          readFile(join(a.folder, file)),
          readFile(join(b.folder, file)),
        ]);
        assert.ok(left.equals(right), file);
      }
    } finally {
      for (const root of roots) await rm(root, { recursive: true, force: true });
    }
  });

  it('changes only the decoder when the detected language changes, and refuses unknown ones', () => {
    const english = whisperModelFiles({ text: 'hello world' });
    const german = whisperModelFiles({ text: 'hello world', detectedLanguage: 'de' });
    assert.equal(english.detectedLanguage, 'en');
    assert.equal(german.detectedLanguage, 'de');
    for (const [path, bytes] of english.files) {
      const same = Buffer.from(bytes).equals(Buffer.from(german.files.get(path) ?? []));
      assert.equal(same, path !== 'onnx/decoder_model_merged.onnx', path);
    }
    assert.throws(
      () => whisperModelFiles({ detectedLanguage: 'xx' }),
      /detectedLanguage: must be one of en, zh/,
    );
  });

  it('changes the decoder when the text changes', () => {
    const hello = whisperModelFiles({ text: 'hello world' }).files.get('onnx/decoder_model_merged.onnx');
    const other = whisperModelFiles({ text: 'goodbye world' }).files.get('onnx/decoder_model_merged.onnx');
    assert.ok(hello !== undefined && other !== undefined);
    assert.ok(!Buffer.from(hello).equals(Buffer.from(other)));
  });
});

describe('spoken-language detection on generated tiny models', () => {
  let root: string;
  let german: GeneratedWhisperModel;
  let javanese: GeneratedWhisperModel;
  let englishOnly: GeneratedWhisperModel;
  let recognizer: TransformersRecognizer;
  let speech: Float32Array;
  let otherSpeech: Float32Array;
  let runs: ReturnType<typeof countSessionRuns>;

  before(async () => {
    runs = countSessionRuns();
    root = await mkdtemp(join(tmpdir(), 'whisper-langid-'));
    german = await generateWhisperModel({
      root,
      modelId: 'cortex-test/whisper-tiny-detects-de',
      text: 'Hello world.',
      detectedLanguage: 'de',
    });
    javanese = await generateWhisperModel({
      root,
      modelId: 'cortex-test/whisper-tiny-detects-jw',
      text: 'Hello world.',
      detectedLanguage: 'jw',
    });
    // An English-only export: no language tokens in the generation config.
    englishOnly = await generateWhisperModel({
      root,
      modelId: 'cortex-test/whisper-tiny-en',
      text: 'Hello world.',
      detectedLanguage: 'de',
    });
    const configPath = join(englishOnly.folder, 'generation_config.json');
    const { lang_to_id, task_to_id, ...config } = JSON.parse(await readFile(configPath, 'utf8'));
    assert.ok(lang_to_id !== undefined && task_to_id !== undefined);
    await writeFile(configPath, JSON.stringify({ ...config, is_multilingual: false }));

    recognizer = localRecognizer(root, german.modelId, [javanese.modelId, englishOnly.modelId]);
    [speech, otherSpeech] = [await speak('hello world', root), await speak('guten Tag aus Köln', root)];
  });

  after(async () => {
    runs.restore();
    await rm(root, { recursive: true, force: true });
  });

  it('reports the detected language and transcribes in it when no language is given', async () => {
    for (const timestamps of ['none', 'segment', 'word'] as const) {
      const result = await recognizer.recognize(
        speech,
        recognizeOptions({ language: undefined, timestamps }),
      );
      assert.equal(result.language, 'de', timestamps);
      assert.equal(result.text, 'Hello world.', timestamps);
      assert.equal(result.model, german.modelId);
    }
    const auto = await recognizer.recognize(speech, recognizeOptions({ language: 'auto' }));
    assert.equal(auto.language, 'de');
  });

  it('uses an explicit language instead of detecting one', async () => {
    const result = await recognizer.recognize(speech, recognizeOptions({ language: 'FR' }));
    assert.equal(result.language, 'fr');
    assert.equal(result.text, 'Hello world.');
  });

  it('costs one extra decoder step and no second encoder pass', async () => {
    for (const timestamps of ['none', 'segment', 'word'] as const) {
      runs.reset();
      await recognizer.recognize(speech, recognizeOptions({ language: 'de', timestamps }));
      const explicit = { encoder: runs.encoder, decoder: runs.decoder };
      runs.reset();
      await recognizer.recognize(speech, recognizeOptions({ language: undefined, timestamps }));
      assert.equal(explicit.encoder, 1, timestamps);
      assert.deepEqual(
        { encoder: runs.encoder, decoder: runs.decoder },
        { encoder: 1, decoder: explicit.decoder + 1 },
        timestamps,
      );
    }
  });

  it('detects per call when calls on different audio overlap', async () => {
    runs.reset();
    await recognizer.recognize(speech, recognizeOptions({ language: 'de' }));
    const explicitDecoderRuns = runs.decoder;
    runs.reset();
    const results = await Promise.all([
      recognizer.recognize(speech, recognizeOptions()),
      recognizer.recognize(otherSpeech, recognizeOptions()),
      recognizer.recognize(speech, recognizeOptions({ model: javanese.modelId })),
    ]);
    assert.deepEqual(
      results.map((result) => [result.language, result.text]),
      [
        ['de', 'Hello world.'],
        ['de', 'Hello world.'],
        ['jv', 'Hello world.'],
      ],
    );
    assert.deepEqual(
      { encoder: runs.encoder, decoder: runs.decoder },
      { encoder: 3, decoder: 3 * (explicitDecoderRuns + 1) },
    );
  });

  it('reports Whisper\'s "jw" as ISO 639-1 "jv" and takes "jv" for it', async () => {
    const detected = await recognizer.recognize(speech, recognizeOptions({ model: javanese.modelId }));
    assert.equal(detected.language, 'jv');
    const explicit = await recognizer.recognize(
      speech,
      recognizeOptions({ model: javanese.modelId, language: 'jv' }),
    );
    assert.deepEqual([explicit.language, explicit.text], ['jv', 'Hello world.']);
    await assert.rejects(
      recognizer.recognize(speech, recognizeOptions({ model: javanese.modelId, language: 'jw' })),
      reasonOf(Reason.InvalidArgument, /"jw" is not a language.*\bjv\b/),
    );
  });

  it('skips detection on an English-only model and reports English', async () => {
    runs.reset();
    await recognizer.recognize(speech, recognizeOptions({ model: englishOnly.modelId, language: 'en' }));
    const explicit = { encoder: runs.encoder, decoder: runs.decoder };
    runs.reset();
    const result = await recognizer.recognize(speech, recognizeOptions({ model: englishOnly.modelId }));
    assert.deepEqual([result.language, result.text], ['en', 'Hello world.']);
    assert.deepEqual({ encoder: runs.encoder, decoder: runs.decoder }, explicit);
  });

  it('stops before the detection step when the call is cancelled during the encoder pass', async () => {
    const controller = new AbortController();
    runs.reset();
    runs.onEncoderRun = () => controller.abort();
    await assert.rejects(
      recognizer.recognize(speech, recognizeOptions({ signal: controller.signal })),
      reasonOf(Reason.Cancelled),
    );
    assert.deepEqual({ encoder: runs.encoder, decoder: runs.decoder }, { encoder: 1, decoder: 0 });
  });

  it('reports no language for empty audio when asked to detect', async () => {
    const result = await recognizer.recognize(new Float32Array(0), recognizeOptions());
    assert.deepEqual([result.text, result.language], ['', '']);
  });
});
