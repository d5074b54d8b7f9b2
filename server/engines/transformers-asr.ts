/**
 * Whisper speech recognition through @huggingface/transformers' `automatic-speech-recognition`
 * pipeline, running on onnxruntime-node in this thread.
 *
 * Models live in `<cacheDir>/<model id>/` in the Hugging Face layout (config.json,
 * generation_config.json, preprocessor_config.json, tokenizer.json, tokenizer_config.json,
 * onnx/encoder_model<suffix>.onnx, onnx/decoder_model_merged<suffix>.onnx, where the suffix follows
 * the dtype: fp32 none, q8 `_quantized`, fp16 `_fp16`, q4 `_q4`…). A pipeline is opened once per
 * model and kept.
 *
 * What transformers.js 4.3.1 does and does not do, which shapes this engine:
 * - It has no language detection: a multilingual model given no language is prompted with
 *   `<|en|>`. So a call without a language is transcribed as English and reported as "en".
 * - Word timestamps need cross-attention outputs in the decoder graph and `alignment_heads` in
 *   generation_config.json. A model without them gets segment timestamps and no words.
 * - onnxruntime cannot stop a running session. An abort is noticed between decoder steps (through
 *   the generation streamer) and after the call; the encoder pass always runs to its end.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { env, pipeline } from '@huggingface/transformers';
import { invalidArgument, Reason, throwIfAborted, VoiceError } from '../errors.js';
import type { Recognition, RecognizeOptions, SpeechRecognizer, TimedSpan, TimestampMode } from './types.js';

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

export interface TransformersRecognizerOptions {
  /** Folder holding the models; becomes transformers' `env.localModelPath` and `env.cacheDir`. */
  readonly cacheDir: string;
  /** Whether transformers may download models that are not in `cacheDir`. */
  readonly allowRemote: boolean;
  readonly defaultModel: string;
  readonly dtype: TransformersDtype;
  /** Model ids callers may ask for; the default model is always allowed. */
  readonly allowedModels: readonly string[];
  readonly device: 'cpu';
  /** onnxruntime intra-op threads per session. */
  readonly threads: number;
}

export interface TransformersRecognizer extends SpeechRecognizer {
  /** Opens the model's pipeline (once); rejects with ENGINE_UNAVAILABLE when it cannot. */
  load(modelId?: string): Promise<void>;
  /** Loads the model and runs one second of silence through it, so the first call is not slow. */
  warmUp(modelId?: string): Promise<void>;
}

/** Whisper takes 30 s per pass. */
const sampleRate = 16_000;
const maxInputSamples = 30 * sampleRate;

/** The files transformers reads for a Whisper model of the given dtype. */
export function whisperModelFiles(dtype: TransformersDtype): string[] {
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
  (audio: Float32Array, options: Record<string, unknown>): Promise<AsrOutput>;
  model: {
    generation_config: {
      is_multilingual?: boolean | null;
      lang_to_id?: Record<string, number> | null;
      alignment_heads?: unknown;
    } | null;
    sessions: Record<string, { outputNames: readonly string[] }>;
  };
}

interface AsrOutput {
  text: string;
  chunks?: Array<{ text: string; timestamp: [number | null, number | null] }>;
}

interface LoadedModel {
  readonly pipe: AsrPipeline;
  /** Language codes of the `<|xx|>` tokens; empty for English-only models. */
  readonly languages: ReadonlySet<string>;
  readonly wordTimestamps: boolean;
}

export function createTransformersRecognizer(options: TransformersRecognizerOptions): TransformersRecognizer {
  const allowed = [...new Set([options.defaultModel, ...options.allowedModels])];
  const models = new Map<string, Promise<LoadedModel>>();

  function modelOf(requested: string | undefined): string {
    const id = requested === undefined || requested === '' ? options.defaultModel : requested;
    if (!allowed.includes(id)) {
      throw new VoiceError(
        Reason.UnknownResource,
        `model: unknown speech recognition model "${id}"; allowed models: ${allowed.join(', ')}`,
      );
    }
    return id;
  }

  function load(id: string): Promise<LoadedModel> {
    let model = models.get(id);
    if (model === undefined) {
      model = open(id, options);
      models.set(id, model);
      // A failed load is not kept: the files may be put in place later.
      model.catch(() => models.delete(id));
    }
    return model;
  }

  return {
    defaultModel: options.defaultModel,
    allowedModels: allowed,
    maxInputSamples,

    async load(modelId) {
      await load(modelOf(modelId));
    },

    async warmUp(modelId) {
      const { pipe, languages } = await load(modelOf(modelId));
      await pipe(
        new Float32Array(sampleRate),
        languages.size > 0 ? { language: 'en', task: 'transcribe' } : {},
      );
    },

    async recognize(
      audio,
      { language, timestamps, model: requested, signal }: RecognizeOptions,
    ): Promise<Recognition> {
      throwIfAborted(signal);
      const id = modelOf(requested);
      if (audio.length > maxInputSamples) {
        throw new VoiceError(
          Reason.LimitExceeded,
          `audio: ${(audio.length / sampleRate).toFixed(1)} s is longer than the ${maxInputSamples / sampleRate} s Whisper takes in one pass`,
        );
      }
      const loaded = await load(id);
      const spokenLanguage = resolveLanguage(language, id, loaded.languages);
      if (audio.length === 0)
        return { text: '', language: spokenLanguage, model: id, segments: [], words: [] };

      const mode: TimestampMode = timestamps === 'word' && !loaded.wordTimestamps ? 'segment' : timestamps;
      const output = await loaded.pipe(audio, {
        ...(loaded.languages.size > 0 ? { language: spokenLanguage, task: 'transcribe' } : {}),
        return_timestamps: mode === 'none' ? false : mode === 'word' ? 'word' : true,
        streamer: abortingStreamer(signal),
      });
      throwIfAborted(signal);

      const text = output.text.trim();
      const durationMs = Math.round((audio.length / sampleRate) * 1000);
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
    const missing = await missingFiles(folder, whisperModelFiles(options.dtype));
    if (missing.length > 0) {
      throw new VoiceError(
        Reason.EngineUnavailable,
        `speech recognition model "${id}" is not installed: it must be in ${folder} ` +
          `(missing ${missing.join(', ')}; remote downloads are off)`,
      );
    }
  }
  let pipe: AsrPipeline;
  try {
    pipe = (await pipeline('automatic-speech-recognition', id, {
      local_files_only: !options.allowRemote,
      dtype: options.dtype,
      device: options.device,
      session_options: { intraOpNumThreads: options.threads, interOpNumThreads: 1 },
    })) as unknown as AsrPipeline;
  } catch (error) {
    throw new VoiceError(
      Reason.EngineUnavailable,
      `speech recognition model "${id}" could not be loaded from ${folder}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  const generation = pipe.model.generation_config;
  const languages = new Set<string>();
  if (generation?.is_multilingual === true) {
    for (const token of Object.keys(generation.lang_to_id ?? {})) {
      const code = /^<\|([a-z]+)\|>$/.exec(token)?.[1];
      if (code !== undefined) languages.add(code);
    }
  }
  const decoderOutputs = pipe.model.sessions.decoder_model_merged?.outputNames ?? [];
  const wordTimestamps =
    Array.isArray(generation?.alignment_heads) &&
    decoderOutputs.some((name) => name.startsWith('cross_attentions'));
  return { pipe, languages, wordTimestamps };
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

/** The language to prompt with and report: the caller's, else English (see the note at the top). */
function resolveLanguage(
  language: string | undefined,
  model: string,
  languages: ReadonlySet<string>,
): string {
  if (language === undefined || language === '') return 'en';
  const code = language.toLowerCase();
  if (languages.size === 0) {
    if (code === 'en') return code;
    throw invalidArgument(
      'language',
      `model "${model}" is English-only; use "en" or leave the language unset`,
    );
  }
  if (!languages.has(code)) {
    throw invalidArgument(
      'language',
      `"${language}" is not a language of model "${model}"; use one of ${[...languages].join(', ')}`,
    );
  }
  return code;
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
