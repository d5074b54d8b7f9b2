import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GeneratedVitsModel, generateVitsModel } from '../fixtures/vits-model.js';
import { type GeneratedWhisperModel, generateWhisperModel } from '../fixtures/whisper-model.js';

export interface TestModels {
  /** A models.cache_dir holding the generated models. */
  readonly cacheDir: string;
  readonly whisper: GeneratedWhisperModel;
  readonly vits: GeneratedVitsModel;
}

let generated: Promise<TestModels> | undefined;

/** Tiny generated Whisper and VITS models in a fresh cache folder, made once per test process. */
export function testModels(): Promise<TestModels> {
  generated ??= (async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'voice-models-'));
    const whisper = await generateWhisperModel({ root: cacheDir, preset: 'tiny' });
    const vits = await generateVitsModel({ root: cacheDir });
    return { cacheDir, whisper, vits };
  })();
  return generated;
}

/** Config sections that point the server at the generated models. */
export function modelSections(models: TestModels): Record<string, unknown> {
  return {
    models: {
      cache_dir: models.cacheDir,
      stt: { model: models.whisper.modelId, dtype: 'fp32' },
      tts: { neural_models: [models.vits.modelId] },
    },
    performance: { workers: 2 },
  };
}
