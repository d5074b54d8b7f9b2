import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AutoTokenizer, env, pipeline } from '@huggingface/transformers';
import type { onnx as OnnxTypes } from 'onnx-proto';
import type * as Ort from 'onnxruntime-node';
import {
  type GeneratedMoonshineModel,
  generateMoonshineModel,
  moonshineEncoderLength,
  moonshineModelFiles,
} from './fixtures/moonshine-model.js';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node') as typeof Ort;
const { onnx } = require('onnx-proto') as { onnx: typeof OnnxTypes };

type Transcribe = ((
  audio: Float32Array,
  options?: { max_new_tokens?: number },
) => Promise<{ text: string }>) & {
  dispose(): Promise<void>;
};

/** Loads a model the way the service does: local files only, fp32 on the CPU, one thread. */
async function loadPipeline(modelId: string): Promise<Transcribe> {
  const pipe = await pipeline('automatic-speech-recognition', modelId, {
    local_files_only: true,
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: 1, interOpNumThreads: 1 },
  });
  return pipe as unknown as Transcribe;
}

/** Seeded white noise at 16 kHz. */
function noise(seconds: number, seed = 1): Float32Array {
  let state = seed;
  return Float32Array.from({ length: Math.round(seconds * 16_000) }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 32 - 0.5) * 0.5;
  });
}

const sessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };

describe('generated Moonshine model', () => {
  let root: string;
  let model: GeneratedMoonshineModel;
  let transcribe: Transcribe;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'moonshine-model-'));
    model = await generateMoonshineModel({ root });
    env.localModelPath = root;
    env.allowRemoteModels = false;
    transcribe = await loadPipeline(model.modelId);
  });

  after(async () => {
    await transcribe?.dispose();
    await rm(root, { recursive: true, force: true });
  });

  it('writes the onnx-community Moonshine layout', async () => {
    assert.deepEqual(model.files, [
      'config.json',
      'generation_config.json',
      'preprocessor_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'onnx/encoder_model.onnx',
      'onnx/decoder_model_merged.onnx',
    ]);
    const config = JSON.parse(await readFile(join(model.folder, 'config.json'), 'utf8'));
    assert.equal(config.model_type, 'moonshine');
    assert.deepEqual(config.architectures, ['MoonshineForConditionalGeneration']);
    const preprocessor = JSON.parse(await readFile(join(model.folder, 'preprocessor_config.json'), 'utf8'));
    assert.equal(preprocessor.feature_extractor_type, 'MoonshineFeatureExtractor');
    assert.equal(preprocessor.processor_class, 'MoonshineProcessor');
    assert.equal(preprocessor.sampling_rate, 16_000);
  });

  for (const seconds of [0.5, 3, 10]) {
    it(`says its text through the real pipeline for ${seconds} s of noise`, async () => {
      const result = await transcribe(noise(seconds), { max_new_tokens: 16 });
      assert.equal(result.text, 'hello world');
    });
  }

  it('says the text with the pipeline default token limit (6 per second)', async () => {
    assert.equal((await transcribe(noise(3))).text, 'hello world');
  });

  it('says the script truncated when max_new_tokens is shorter than it', async () => {
    assert.equal((await transcribe(noise(3), { max_new_tokens: 1 })).text, 'hello');
  });

  it('ships a Llama-style tokenizer that encodes the text to the ids the model emits', async () => {
    const tokenizer = await AutoTokenizer.from_pretrained(model.modelId, { local_files_only: true });
    const ids = tokenizer.encode(model.text);
    assert.deepEqual(ids, [1, ...model.textTokenIds]);
    assert.equal(tokenizer.decode([...ids, 2], { skip_special_tokens: true }), model.text);
    assert.equal(tokenizer.decode([1, ...model.textTokenIds, 2]), `<s> ${model.text}</s>`);
  });

  it('keeps its place in the script in the self-attention cache', async () => {
    const decoder = await ort.InferenceSession.create(
      join(model.folder, 'onnx/decoder_model_merged.onnx'),
      sessionOptions,
    );
    try {
      const encoded = new ort.Tensor('float32', new Float32Array(5 * 32), [1, 5, 32]);
      const step = async (token: number, cache: Record<string, Ort.Tensor> | undefined) => {
        const feeds: Record<string, Ort.Tensor> = {
          input_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(token)), [1, 1]),
          encoder_hidden_states: encoded,
          use_cache_branch: new ort.Tensor('bool', [cache !== undefined], [1]),
        };
        for (const name of decoder.inputNames.filter((n) => n.startsWith('past_key_values.'))) {
          const carried = cache?.[name.replace('past_key_values.', 'present.')];
          feeds[name] = carried ?? new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 16]);
        }
        const outputs = await decoder.run(feeds);
        const logits = outputs.logits?.data as Float32Array;
        return { next: logits.indexOf(Math.max(...logits)), outputs };
      };
      const [hello, world] = model.textTokenIds;
      const first = await step(1, undefined);
      assert.equal(first.next, hello);
      const second = await step(hello as number, first.outputs);
      assert.equal(second.next, world);
      const third = await step(world as number, second.outputs);
      assert.equal(third.next, 2, 'after both words comes </s>');
      const forgetful = await step(world as number, undefined);
      assert.equal(forgetful.next, world, 'without the cache the count restarts and a word repeats');
    } finally {
      await decoder.release();
    }
  });

  it('writes the same bytes for the same options and other bytes for another text', () => {
    const one = moonshineModelFiles({ text: 'same words' });
    const two = moonshineModelFiles({ text: 'same words' });
    assert.deepEqual([...one.files.keys()], [...two.files.keys()]);
    for (const [path, bytes] of one.files) assert.deepEqual(two.files.get(path), bytes, path);
    const other = moonshineModelFiles({ text: 'other words' });
    assert.notDeepEqual(
      other.files.get('onnx/decoder_model_merged.onnx'),
      one.files.get('onnx/decoder_model_merged.onnx'),
    );
  });

  it('fails in transformers 4.3.1 with the legacy config key names the published exports carry', async () => {
    const legacy = await generateMoonshineModel({
      root,
      modelId: 'cortex-test/moonshine-legacy',
      legacyConfig: true,
    });
    const config = JSON.parse(await readFile(join(legacy.folder, 'config.json'), 'utf8'));
    assert.equal(config.num_hidden_layers, 1);
    assert.equal(config.decoder_num_hidden_layers, undefined);
    const run = async () => {
      const pipe = await loadPipeline(legacy.modelId);
      try {
        return await pipe(noise(1), { max_new_tokens: 4 });
      } finally {
        await pipe.dispose();
      }
    };
    await assert.rejects(run, /Missing the following inputs: past_key_values\.0\.decoder\.key/);
  });
});

describe('generated Moonshine model at real dimensions', () => {
  let root: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'moonshine-real-'));
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('tiny: the encoder output grows with the audio, without padding to a window', async () => {
    const tiny = await generateMoonshineModel({ root, preset: 'tiny' });
    const encoder = await ort.InferenceSession.create(
      join(tiny.folder, 'onnx/encoder_model.onnx'),
      sessionOptions,
    );
    try {
      const lengths: number[] = [];
      for (const seconds of [3, 6]) {
        const audio = noise(seconds);
        const { last_hidden_state: hidden } = await encoder.run({
          input_values: new ort.Tensor('float32', audio, [1, audio.length]),
        });
        assert.ok(hidden !== undefined);
        assert.deepEqual(hidden.dims, [1, moonshineEncoderLength(audio.length), 288]);
        assert.ok((hidden.data as Float32Array).every(Number.isFinite));
        lengths.push(hidden.dims[1] as number);
      }
      assert.deepEqual(lengths, [123, 248]);
    } finally {
      await encoder.release();
    }
  });

  it('base: config and weights have moonshine-base dimensions', () => {
    const base = moonshineModelFiles({ preset: 'base' });
    const config = JSON.parse(new TextDecoder().decode(base.files.get('config.json')));
    assert.equal(config.hidden_size, 416);
    assert.equal(config.intermediate_size, 1664);
    assert.equal(config.encoder_num_hidden_layers, 8);
    assert.equal(config.decoder_num_hidden_layers, 8);
    assert.equal(config.decoder_num_key_value_heads, 8);
    assert.equal(config.vocab_size, 32_768);

    const shapes = (path: string) => {
      const graph = onnx.ModelProto.decode(base.files.get(path) as Uint8Array).graph;
      return new Map((graph?.initializer ?? []).map((t) => [t.name, (t.dims ?? []).map(Number)]));
    };
    const encoder = shapes('onnx/encoder_model.onnx');
    assert.deepEqual(encoder.get('encoder.conv1.weight'), [416, 1, 127]);
    assert.deepEqual(encoder.get('encoder.conv2.weight'), [832, 416, 7]);
    assert.deepEqual(encoder.get('encoder.conv3.weight'), [416, 832, 3]);
    assert.deepEqual(encoder.get('encoder.layers.7.mlp.fc1.weight'), [416, 1664]);
    const decoder = shapes('onnx/decoder_model_merged.onnx');
    assert.deepEqual(decoder.get('decoder.embed_tokens.weight'), [32_768, 416]);
    assert.deepEqual(decoder.get('decoder.layers.7.mlp.fc1.weight'), [416, 2 * 1664]);
    assert.deepEqual(decoder.get('decoder.layers.7.encoder_attn.k_proj.weight'), [416, 416]);
  });
});
