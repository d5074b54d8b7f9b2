/**
 * Speech recognition through @huggingface/transformers' `automatic-speech-recognition` pipeline,
 * running on onnxruntime-node in this thread, for two families of models:
 * - **Whisper** (multilingual or English-only): every pass covers a 30 s window. Its log-mel
 *   features are computed only over the audio (whisper-features.ts, bit-identical to the padded
 *   ones); the encoder still runs over the whole window, so a pass costs about the same whatever
 *   the utterance's length. Languages are detected (whisper-language-detection.ts).
 * - **Moonshine** (English): takes raw audio and its cost grows with the audio's length.
 *
 * Models live in `<cacheDir>/<model id>/` in the Hugging Face layout (config.json,
 * generation_config.json, preprocessor_config.json, tokenizer.json, tokenizer_config.json,
 * onnx/encoder_model<suffix>.onnx, onnx/decoder_model_merged<suffix>.onnx, where the suffix follows
 * the dtype: fp32 none, q8 `_quantized`, fp16 `_fp16`, q4 `_q4`…). A pipeline is opened once per
 * model and kept. config.json is normalised in memory first (asr-model-config.ts).
 *
 * What transformers.js 4.3.1 does and does not do, which shapes this engine:
 * - Word timestamps need cross-attention outputs in the Whisper decoder graph and
 *   `alignment_heads` in generation_config.json. A model without them gets segment timestamps and
 *   no words. Moonshine gives no timestamps: its one segment spans the utterance.
 * - Moonshine's pipeline caps the output at `floor(seconds) × 6` tokens, none under 1 s; this
 *   engine sets the budget from the utterance's length instead (`moonshineTokenBudget`).
 * - onnxruntime cannot stop a running session. An abort is noticed between decoder steps (through
 *   the generation streamer) and after the call; the encoder pass always runs to its end.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { env, pipeline } from '@huggingface/transformers';
import { Reason, throwIfAborted, VoiceError } from '../errors.js';
import { type AsrFamily, familyOf, normalizeModelConfig, readModelConfig } from './asr-model-config.js';
import { moonshineTokenBudget, padToMoonshineMinimum } from './moonshine-input.js';
import type { Recognition, RecognizeOptions, SpeechRecognizer, TimedSpan, TimestampMode } from './types.js';
import { useExactShortFeatures } from './whisper-features.js';

export { moonshineTokenBudget };

import { resolveLanguage, toIsoCode, toWhisperCode } from './recognition-language.js';
import {
  detectLanguage,
  enableLanguageDetection,
  type LanguageDetection,
  type WhisperModel,
} from './whisper-language-detection.js';

/** Model file suffix per transformers dtype. */
export const dtypeSuffixes = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  int8: '_int8',
  uint8: '_uint8',
  q4: '_q4',
  q4f16: '_q4f16',
  bnb4: '_bnb4',
} as const;
export type TransformersDtype = keyof typeof dtypeSuffixes;

export type AsrDevice = 'cpu' | 'cuda';

export interface TransformersRecognizerOptions {
  /** Folder holding the models; becomes transformers' `env.localModelPath` and `env.cacheDir`. */
  readonly cacheDir: string;
  /** Whether transformers may download models that are not in `cacheDir`. */
  readonly allowRemote: boolean;
  /** The model for streams that name none and are not routed to `englishModel`. */
  readonly defaultModel: string;
  /** The model English streams that name none go to; undefined sends them to `defaultModel`. */
  readonly englishModel?: string | undefined;
  readonly dtype: TransformersDtype;
  /** Model ids callers may ask for; the default and English models are always allowed. */
  readonly allowedModels: readonly string[];
  readonly device: AsrDevice;
  /** onnxruntime intra-op threads per session. */
  readonly threads: number;
}

export interface TransformersRecognizer extends SpeechRecognizer {
  /** Opens the model's pipeline (once); rejects with ENGINE_UNAVAILABLE when it cannot. */
  load(modelId?: string): Promise<void>;
  /** Loads the model and runs one second of silence through it, so the first call is not slow. */
  warmUp(modelId?: string): Promise<void>;
  /** The family of a loaded model. */
  familyOf(modelId: string): AsrFamily | undefined;
  /** Whether a loaded model gives word timestamps. */
  hasWordTimestamps(modelId: string): boolean;
}

/** Both families take at most 30 s per pass (Whisper's window; Moonshine was trained on ≤ 30 s). */
const sampleRate = 16_000;
const maxInputSamples = 30 * sampleRate;

/** The files transformers reads for a Whisper or Moonshine model of the given dtype. */
export function recognitionModelFiles(dtype: TransformersDtype): string[] {
  const suffix = dtypeSuffixes[dtype];
  return [
    'config.json',
    'generation_config.json',
    'preprocessor_config.json',
    'tokenizer.json',
    'tokenizer_config.json',
    `onnx/encoder_model${suffix}.onnx`,
    `onnx/decoder_model_merged${suffix}.onnx`,
  ];
}

/** The slice of transformers' AutomaticSpeechRecognitionPipeline this engine uses. */
interface AsrPipeline {
  (audio: Float32Array, options: Record<string | symbol, unknown>): Promise<AsrOutput>;
  model: WhisperModel;
  processor: { feature_extractor: unknown };
}

interface AsrOutput {
  text: string;
  chunks?: Array<{ text: string; timestamp: [number | null, number | null] }>;
}

interface LoadedModel {
  readonly family: AsrFamily;
  readonly pipe: AsrPipeline;
  /** ISO 639-1 codes of the `<|xx|>` tokens (Whisper's "jw" as "jv"); empty for English-only models. */
  readonly languages: ReadonlySet<string>;
  readonly wordTimestamps: boolean;
}

export function createTransformersRecognizer(options: TransformersRecognizerOptions): TransformersRecognizer {
  const englishModel =
    options.englishModel === undefined || options.englishModel === '' ? undefined : options.englishModel;
  const allowed = [
    ...new Set([options.defaultModel, ...(englishModel ? [englishModel] : []), ...options.allowedModels]),
  ];
  const models = new Map<string, Promise<LoadedModel>>();
  const loadedInfo = new Map<string, { family: AsrFamily; wordTimestamps: boolean }>();

  function modelOf(requested: string | undefined): string {
    const id = requested === undefined || requested === '' ? options.defaultModel : requested;
    if (!allowed.includes(id)) {
      throw new VoiceError(
        Reason.UnknownResource,
        `model: unknown speech recognition model "${id}"; allowed models: ${allowed.join(', ')}`,
        { info: { field: 'model' } },
      );
    }
    return id;
  }

  function load(id: string): Promise<LoadedModel> {
    let model = models.get(id);
    if (model === undefined) {
      model = open(id, options);
      models.set(id, model);
      model.then(
        (loaded) => loadedInfo.set(id, { family: loaded.family, wordTimestamps: loaded.wordTimestamps }),
        // A failed load is not kept: the files may be put in place later.
        () => models.delete(id),
      );
    }
    return model;
  }

  return {
    defaultModel: options.defaultModel,
    englishModel,
    allowedModels: allowed,
    maxInputSamples,

    async load(modelId) {
      await load(modelOf(modelId));
    },

    async warmUp(modelId) {
      const { pipe, languages, family } = await load(modelOf(modelId));
      const second = new Float32Array(sampleRate);
      if (family === 'moonshine') await pipe(second, { max_new_tokens: moonshineTokenBudget(second.length) });
      else await pipe(second, languages.size > 0 ? { language: 'en', task: 'transcribe' } : {});
    },

    familyOf: (modelId) => loadedInfo.get(modelId)?.family,
    hasWordTimestamps: (modelId) => loadedInfo.get(modelId)?.wordTimestamps === true,

    async recognize(
      audio,
      { language, timestamps, model: requestedModel, signal }: RecognizeOptions,
    ): Promise<Recognition> {
      throwIfAborted(signal);
      const id = modelOf(requestedModel);
      if (audio.length > maxInputSamples) {
        throw new VoiceError(
          Reason.LimitExceeded,
          `audio: ${(audio.length / sampleRate).toFixed(1)} s is longer than the ${maxInputSamples / sampleRate} s a model takes in one pass`,
        );
      }
      const loaded = await load(id);
      const requested = resolveLanguage(language, id, loaded.languages);
      if (audio.length === 0)
        return { text: '', language: requested ?? '', model: id, segments: [], words: [] };
      const durationMs = Math.round((audio.length / sampleRate) * 1000);
      if (loaded.family === 'moonshine') {
        const output = await loaded.pipe(padToMoonshineMinimum(audio), {
          max_new_tokens: moonshineTokenBudget(audio.length),
          streamer: abortingStreamer(signal),
        });
        throwIfAborted(signal);
        const text = output.text.trim();
        const whole = text === '' ? [] : [{ text, startMs: 0, endMs: durationMs }];
        return { text, language: 'en', model: id, segments: timestamps === 'none' ? [] : whole, words: [] };
      }

      const mode: TimestampMode = timestamps === 'word' && !loaded.wordTimestamps ? 'segment' : timestamps;
      const detection: LanguageDetection | undefined = requested === undefined ? { signal } : undefined;
      const output = await loaded.pipe(audio, {
        ...(loaded.languages.size > 0 ? { language: toWhisperCode(requested), task: 'transcribe' } : {}),
        ...(detection === undefined ? {} : { [detectLanguage]: detection }),
        return_timestamps: mode === 'none' ? false : mode === 'word' ? 'word' : true,
        streamer: abortingStreamer(signal),
      });
      throwIfAborted(signal);
      let spokenLanguage = requested;
      if (spokenLanguage === undefined) {
        if (detection?.detected === undefined)
          throw new VoiceError(Reason.Internal, `model "${id}": language detection did not run`);
        spokenLanguage = toIsoCode(detection.detected);
      }

      const text = output.text.trim();
      const spans = (output.chunks ?? []).map((chunk) => toSpan(chunk, durationMs));
      if (mode === 'word') {
        const first = spans[0];
        const last = spans.at(-1);
        const segments =
          first === undefined || last === undefined
            ? []
            : [{ text, startMs: first.startMs, endMs: last.endMs }];
        return { text, language: spokenLanguage, model: id, segments, words: spans };
      }
      return {
        text,
        language: spokenLanguage,
        model: id,
        segments: mode === 'segment' ? spans : [],
        words: [],
      };
    },
  };
}

async function open(id: string, options: TransformersRecognizerOptions): Promise<LoadedModel> {
  // transformers' env is process-wide: every engine using the library shares these settings.
  env.localModelPath = options.cacheDir;
  env.cacheDir = options.cacheDir;
  env.allowLocalModels = true;
  env.allowRemoteModels = options.allowRemote;

  const folder = join(options.cacheDir, ...id.split('/'));
  if (!options.allowRemote) {
    const missing = await missingFiles(folder, recognitionModelFiles(options.dtype));
    if (missing.length > 0) {
      throw new VoiceError(
        Reason.EngineUnavailable,
        `speech recognition model "${id}" is not installed: it must be in ${folder} ` +
          `(missing ${missing.join(', ')}; install it with 'voice models pull')`,
      );
    }
  }
  const unloadable = (why: string, cause?: unknown) =>
    new VoiceError(
      Reason.EngineUnavailable,
      `speech recognition model "${id}" could not be loaded from ${folder}: ${why}`,
      cause === undefined ? {} : { cause },
    );
  let config: Record<string, unknown> | undefined;
  try {
    config = normalizeModelConfig(await readModelConfig(folder)).config;
  } catch (error) {
    // With remote downloads on, the library fetches config.json itself.
    if (!options.allowRemote) throw unloadable(messageOf(error), error);
  }
  const family = config === undefined ? 'whisper' : familyOf(config);
  if (family === undefined) {
    throw unloadable(
      `its model_type "${String(config?.model_type)}" is not one this engine runs (whisper, moonshine)`,
    );
  }
  let pipe: AsrPipeline;
  try {
    pipe = (await pipeline('automatic-speech-recognition', id, {
      local_files_only: !options.allowRemote,
      dtype: options.dtype,
      device: options.device,
      ...(config === undefined ? {} : { config: config as never }),
      session_options: { intraOpNumThreads: options.threads, interOpNumThreads: 1 },
    })) as unknown as AsrPipeline;
  } catch (error) {
    throw unloadable(messageOf(error), error);
  }
  if (family === 'moonshine') return { family, pipe, languages: new Set(), wordTimestamps: false };
  useExactShortFeatures(pipe.processor.feature_extractor);

  const generation = pipe.model.generation_config;
  const languageTokens = new Map<number, string>();
  if (generation?.is_multilingual === true) {
    for (const [token, tokenId] of Object.entries(generation.lang_to_id ?? {})) {
      const code = /^<\|([a-z]+)\|>$/.exec(token)?.[1];
      if (code !== undefined) languageTokens.set(tokenId, code);
    }
  }
  const languages = new Set([...languageTokens.values()].map(toIsoCode));
  if (languageTokens.size > 0) {
    const start = generation?.decoder_start_token_id;
    const encoder = pipe.model.sessions.model;
    if (typeof start !== 'number' || encoder === undefined) {
      throw new VoiceError(
        Reason.EngineUnavailable,
        `speech recognition model "${id}" cannot detect languages: it needs decoder_start_token_id in generation_config.json and an encoder session`,
      );
    }
    enableLanguageDetection(pipe.model, encoder, start, languageTokens);
  }
  const decoderOutputs = pipe.model.sessions.decoder_model_merged?.outputNames ?? [];
  const wordTimestamps =
    Array.isArray(generation?.alignment_heads) &&
    decoderOutputs.some((name) => name.startsWith('cross_attentions'));
  return { family, pipe, languages, wordTimestamps };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function missingFiles(folder: string, files: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const file of files) {
    try {
      await access(join(folder, file));
    } catch {
      missing.push(file);
    }
  }
  return missing;
}

/** A generation streamer that ends decoding with the abort reason once the signal fires. */
function abortingStreamer(signal: AbortSignal) {
  return {
    put() {
      throwIfAborted(signal);
    },
    end() {},
  };
}

function toSpan(
  chunk: { text: string; timestamp: [number | null, number | null] },
  durationMs: number,
): TimedSpan {
  const [start, end] = chunk.timestamp;
  const startMs = start === null ? 0 : Math.round(start * 1000);
  return {
    text: chunk.text.trim(),
    startMs,
    endMs: end === null ? Math.max(startMs, durationMs) : Math.round(end * 1000),
  };
}
