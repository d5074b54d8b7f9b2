/**
 * Reads a speech recognition model's config.json and brings it to the keys
 * @huggingface/transformers 4.3.1 reads.
 *
 * The published Moonshine exports (onnx-community/moonshine-tiny-ONNX, moonshine-base-ONNX) still
 * carry the older single-stack keys — `num_hidden_layers`, `num_attention_heads`,
 * `num_key_value_heads` — while the library sizes the decoder's KV cache from
 * `encoder_/decoder_num_hidden_layers` and `encoder_/decoder_num_key_value_heads`; with the old keys
 * it builds an empty cache and the first decoder step fails. Both stacks of those models have the
 * same depth and heads, so the old values fill both new keys. Normalising is done in memory when a
 * model loads (the model folder may be read-only) and on disk when a model is installed.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export type AsrFamily = 'whisper' | 'moonshine';

export type ModelConfig = Record<string, unknown>;

/** The new key and the legacy key whose value it takes when missing. */
const MOONSHINE_KEYS: ReadonlyArray<readonly [string, string]> = [
  ['encoder_num_hidden_layers', 'num_hidden_layers'],
  ['decoder_num_hidden_layers', 'num_hidden_layers'],
  ['encoder_num_attention_heads', 'num_attention_heads'],
  ['decoder_num_attention_heads', 'num_attention_heads'],
  ['encoder_num_key_value_heads', 'num_key_value_heads'],
  ['decoder_num_key_value_heads', 'num_key_value_heads'],
];

/** The config with the keys the library reads filled in; `changed` says whether anything was added. */
export function normalizeModelConfig(config: ModelConfig): { config: ModelConfig; changed: boolean } {
  if (config.model_type !== 'moonshine') return { config, changed: false };
  const normalized: ModelConfig = { ...config };
  let changed = false;
  for (const [key, legacy] of MOONSHINE_KEYS) {
    if (normalized[key] === undefined && normalized[legacy] !== undefined) {
      normalized[key] = normalized[legacy];
      changed = true;
    }
  }
  // Grouped-query attention is not used by Moonshine: without a key-value head count the library
  // would size the cache with none, so it falls back to the attention heads.
  for (const stack of ['encoder', 'decoder']) {
    const kv = `${stack}_num_key_value_heads`;
    const heads = `${stack}_num_attention_heads`;
    if (normalized[kv] === undefined && normalized[heads] !== undefined) {
      normalized[kv] = normalized[heads];
      changed = true;
    }
  }
  return { config: normalized, changed };
}

/** The recognition family of a config, or undefined when the engine cannot run it. */
export function familyOf(config: ModelConfig): AsrFamily | undefined {
  switch (config.model_type) {
    case 'whisper':
    case 'lite-whisper':
      return 'whisper';
    case 'moonshine':
      return 'moonshine';
    default:
      return undefined;
  }
}

export async function readModelConfig(folder: string): Promise<ModelConfig> {
  const parsed: unknown = JSON.parse(await readFile(join(folder, 'config.json'), 'utf8'));
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(`${join(folder, 'config.json')} does not hold a JSON object`);
  }
  return parsed as ModelConfig;
}

/** Rewrites an installed model's config.json with the keys the library reads; true when it changed. */
export async function normalizeInstalledConfig(folder: string): Promise<boolean> {
  const { config, changed } = normalizeModelConfig(await readModelConfig(folder));
  if (!changed) return false;
  const target = join(folder, 'config.json');
  const partial = `${target}.partial`;
  await writeFile(partial, `${JSON.stringify(config, null, 2)}\n`);
  await rename(partial, target);
  return true;
}
