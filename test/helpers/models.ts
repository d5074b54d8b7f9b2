import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GeneratedMoonshineModel, generateMoonshineModel } from '../fixtures/moonshine-model.js';
import { type GeneratedVitsModel, generateVitsModel } from '../fixtures/vits-model.js';
import { type GeneratedWhisperModel, generateWhisperModel } from '../fixtures/whisper-model.js';

export interface TestModels {
  /** A models.cache_dir holding the generated models. */
  readonly cacheDir: string;
  /** The multilingual model (models.stt.model). */
  readonly whisper: GeneratedWhisperModel;
  /** The English model (models.stt.english_model); it says the same text as `whisper`. */
  readonly moonshine: GeneratedMoonshineModel;
  readonly vits: GeneratedVitsModel;
}

let generated: Promise<TestModels> | undefined;

/** Minimal generated Whisper, Moonshine and VITS models in a fresh cache folder, made once per test process. */
export function testModels(): Promise<TestModels> {
  generated ??= (async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'voice-models-'));
    // The id predates the preset's rename from `tiny`; tests name it in expected messages.
    const whisper = await generateWhisperModel({
      root: cacheDir,
      preset: 'minimal',
      modelId: 'cortex-test/whisper-tiny-random',
    });
    const moonshine = await generateMoonshineModel({ root: cacheDir, text: whisper.text });
    const vits = await generateVitsModel({ root: cacheDir });
    return { cacheDir, whisper, moonshine, vits };
  })();
  return generated;
}

/** Config sections that point the server at the generated models. */
export function modelSections(models: TestModels): Record<string, unknown> {
  return {
    models: {
      cache_dir: models.cacheDir,
      stt: { model: models.whisper.modelId, english_model: models.moonshine.modelId, dtype: 'fp32' },
      tts: { neural_models: [models.vits.modelId] },
    },
    performance: { workers: 2 },
  };
}
