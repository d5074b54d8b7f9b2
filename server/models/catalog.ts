import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from '../config.js';
import { kokoroModelFiles } from '../engines/kokoro-model.js';
import { recognitionModelFiles } from '../engines/transformers-asr.js';
import { vitsModelFiles } from '../engines/transformers-tts.js';

/** A model the configuration uses, with the files the engines read from it. */
export interface ModelEntry {
  readonly id: string;
  readonly kind: 'speech recognition' | 'neural voice';
  readonly files: readonly string[];
  /** `<cache_dir>/<org>/<name>`, where the engines look for it. */
  readonly folder: string;
}

export interface ModelStatus extends ModelEntry {
  readonly missing: readonly string[];
}

/** Every model the config names: the multilingual and English recognition models and allow-list, the neural voices (VITS, Kokoro). */
export function configuredModels(config: Config): ModelEntry[] {
  const root = resolve(config.models.cache_dir);
  const entry = (id: string, kind: ModelEntry['kind'], files: readonly string[]): ModelEntry => ({
    id,
    kind,
    files,
    folder: join(root, ...id.split('/')),
  });
  const { stt: sttConfig } = config.models;
  const sttIds = [sttConfig.model, ...(sttConfig.english_model === '' ? [] : [sttConfig.english_model])];
  const stt = [...new Set([...sttIds, ...sttConfig.allowed_models])].map((id) =>
    entry(id, 'speech recognition', recognitionModelFiles(sttConfig.dtype)),
  );
  const tts = config.models.tts.neural_models.map((id) => entry(id, 'neural voice', vitsModelFiles));
  const { kokoro } = config.models.tts;
  const kokoroEntry = kokoro.enabled
    ? [entry(kokoro.model, 'neural voice', kokoroModelFiles(kokoro.dtype, kokoro.voices))]
    : [];
  return [...stt, ...tts, ...kokoroEntry];
}

/** Which files of each model are on disk. */
export function modelStatus(models: readonly ModelEntry[]): ModelStatus[] {
  return models.map((model) => ({
    ...model,
    missing: model.files.filter((file) => !existsSync(join(model.folder, file))),
  }));
}
