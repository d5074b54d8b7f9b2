import {
  createTransformersRecognizer,
  type TransformersRecognizer,
} from '../../server/engines/transformers-asr.js';
import type { RecognizeOptions } from '../../server/engines/types.js';

/** The recognizer over generated models in `root`: local files only, fp32, CPU, one thread. */
export function localRecognizer(
  root: string,
  defaultModel: string,
  allowedModels: readonly string[] = [],
): TransformersRecognizer {
  return createTransformersRecognizer({
    cacheDir: root,
    allowRemote: false,
    defaultModel,
    dtype: 'fp32',
    allowedModels,
    device: 'cpu',
    threads: 1,
  });
}

/** Recognize options with the defaults a final takes: detect the language, no timestamps. */
export function recognizeOptions(overrides: Partial<RecognizeOptions> = {}): RecognizeOptions {
  return {
    language: undefined,
    timestamps: 'none',
    priority: 'final',
    model: undefined,
    signal: new AbortController().signal,
    ...overrides,
  };
}
