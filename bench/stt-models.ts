/**
 * The benchmark's four generated models: Whisper and Moonshine at the real tiny and base
 * dimensions (random weights, so true compute cost and a fixed output), written by the test
 * fixtures into one scratch folder.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { moonshineTokenBudget } from '../server/engines/transformers-asr.js';
import { generateMoonshineModel } from '../test/fixtures/moonshine-model.js';
import { generateWhisperModel } from '../test/fixtures/whisper-model.js';

export const MODEL_KEYS = ['whisper-tiny', 'whisper-base', 'moonshine-tiny', 'moonshine-base'] as const;
export type ModelKey = (typeof MODEL_KEYS)[number];
export type Family = 'whisper' | 'moonshine';

export interface BenchModel {
  readonly key: ModelKey;
  readonly family: Family;
  readonly modelId: string;
  /** transformers' localModelPath: the model is in `<cacheDir>/<modelId>/`. */
  readonly cacheDir: string;
  /** The dimensions read back from the generated config.json, e.g. "4+4 layers, d_model 384, 6 heads". */
  readonly dims: string;
  /** Whether those are the real model's dimensions (false: the fixture's preset is not what we asked). */
  readonly realDims: boolean;
  readonly text: string;
  readonly genSeconds: number;
}

interface Expected {
  readonly width: number;
  readonly encoderLayers: number;
  readonly decoderLayers: number;
}

const EXPECTED: Record<ModelKey, Expected> = {
  'whisper-tiny': { width: 384, encoderLayers: 4, decoderLayers: 4 },
  'whisper-base': { width: 512, encoderLayers: 6, decoderLayers: 6 },
  'moonshine-tiny': { width: 288, encoderLayers: 6, decoderLayers: 6 },
  'moonshine-base': { width: 416, encoderLayers: 8, decoderLayers: 8 },
};

export function parseModelKeys(list: string): ModelKey[] {
  const keys = list.split(',').map((key) => key.trim());
  const unknown = keys.filter((key) => !(MODEL_KEYS as readonly string[]).includes(key));
  if (unknown.length > 0 || keys.length === 0) {
    throw new RangeError(`--models: a list of ${MODEL_KEYS.join(', ')}; got ${list}`);
  }
  return MODEL_KEYS.filter((key) => keys.includes(key));
}

export async function generateModel(root: string, key: ModelKey): Promise<BenchModel> {
  const started = performance.now();
  const family: Family = key.startsWith('whisper') ? 'whisper' : 'moonshine';
  const preset = key.endsWith('tiny') ? 'tiny' : 'base';
  const generated =
    family === 'whisper'
      ? await generateWhisperModel({ root, preset })
      : await generateMoonshineModel({ root, preset });
  const config = JSON.parse(readFileSync(join(generated.folder, 'config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const num = (name: string) => Number(config[name]);
  const width = family === 'whisper' ? num('d_model') : num('hidden_size');
  const encoderLayers = family === 'whisper' ? num('encoder_layers') : num('encoder_num_hidden_layers');
  const decoderLayers = family === 'whisper' ? num('decoder_layers') : num('decoder_num_hidden_layers');
  const heads = family === 'whisper' ? num('encoder_attention_heads') : num('encoder_num_attention_heads');
  const expected = EXPECTED[key];
  return {
    key,
    family,
    modelId: generated.modelId,
    cacheDir: root,
    dims: `${encoderLayers}+${decoderLayers} layers, ${family === 'whisper' ? 'd_model' : 'hidden'} ${width}, ${heads} heads`,
    realDims:
      width === expected.width &&
      encoderLayers === expected.encoderLayers &&
      decoderLayers === expected.decoderLayers,
    text: generated.text,
    genSeconds: (performance.now() - started) / 1000,
  };
}

/**
 * What a plain library user passes to the pipeline for one utterance, as the service does:
 * Whisper is told the language; Moonshine gets an output budget from the utterance's length
 * (the library's own default caps it at 6 tokens per whole second, none under 1 s).
 */
export function pipelineOptions(family: Family, samples: number): Record<string, unknown> {
  return family === 'whisper'
    ? { language: 'en', task: 'transcribe' }
    : { max_new_tokens: moonshineTokenBudget(samples) };
}
