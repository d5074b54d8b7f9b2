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
 *   `<|en|>`. This engine detects the language itself, as Whisper's `detect_language` does: one
 *   decoder step on `<|startoftranscript|>` alone over the utterance's encoder output, argmax over
 *   the language tokens. It runs inside the pipeline's call to `model.generate`, on the features the
 *   pipeline computed (the log-mel features of a 30 s window take ~140 ms in JS), and its encoder
 *   output is handed back when generate encodes the same features, so the encoder runs once. The
 *   extra cost is that one decoder step, which computes the cross-attention keys and values that
 *   generate's first step computes again. English-only models skip detection and report "en".
 * - Word timestamps need cross-attention outputs in the decoder graph and `alignment_heads` in
 *   generation_config.json. A model without them gets segment timestamps and no words.
 * - onnxruntime cannot stop a running session. An abort is noticed between decoder steps (through
 *   the generation streamer) and after the call; the encoder pass always runs to its end.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { env, pipeline, Tensor } from '@huggingface/transformers';
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
  (audio: Float32Array, options: Record<string | symbol, unknown>): Promise<AsrOutput>;
  model: WhisperModel;
}

/** The slice of transformers' WhisperForConditionalGeneration this engine uses. */
interface WhisperModel {
  generation_config: {
    is_multilingual?: boolean | null;
    lang_to_id?: Record<string, number> | null;
    decoder_start_token_id?: number | null;
    alignment_heads?: unknown;
  } | null;
  sessions: Record<string, OrtSession>;
  generate(params: Record<string | symbol, unknown>): Promise<unknown>;
  forward(inputs: Record<string, unknown>): Promise<{ logits: Tensor }>;
}

/** An onnxruntime InferenceSession as transformers keeps it in `model.sessions`. */
interface OrtSession {
  readonly outputNames: readonly string[];
  run(feeds: Record<string, unknown>, ...rest: unknown[]): Promise<Record<string, unknown>>;
}

interface AsrOutput {
  text: string;
  chunks?: Array<{ text: string; timestamp: [number | null, number | null] }>;
}

interface LoadedModel {
  readonly pipe: AsrPipeline;
  /** ISO 639-1 codes of the `<|xx|>` tokens (Whisper's "jw" as "jv"); empty for English-only models. */
  readonly languages: ReadonlySet<string>;
  readonly wordTimestamps: boolean;
}

/**
 * Passed to the pipeline under the `detectLanguage` symbol; the pipeline hands its options on to
 * `model.generate`, where the wrapper installed by `enableLanguageDetection` reads it.
 */
interface LanguageDetection {
  readonly signal: AbortSignal;
  /** The detected language's Whisper code, once detected. */
  detected?: string;
}

const detectLanguage = Symbol('detectLanguage');

/** Whisper's codes that are not the ISO 639-1 code of their language. */
const whisperToIso: Readonly<Record<string, string>> = { jw: 'jv' };
const isoToWhisper: Readonly<Record<string, string>> = { jv: 'jw' };

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
      { language, timestamps, model: requestedModel, signal }: RecognizeOptions,
    ): Promise<Recognition> {
      throwIfAborted(signal);
      const id = modelOf(requestedModel);
      if (audio.length > maxInputSamples) {
        throw new VoiceError(
          Reason.LimitExceeded,
          `audio: ${(audio.length / sampleRate).toFixed(1)} s is longer than the ${maxInputSamples / sampleRate} s Whisper takes in one pass`,
        );
      }
      const loaded = await load(id);
      const requested = resolveLanguage(language, id, loaded.languages);
      if (audio.length === 0)
        return { text: '', language: requested ?? '', model: id, segments: [], words: [] };

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

/**
 * The caller's language as an ISO 639-1 code the model has, or undefined to detect it. English-only
 * models always speak English.
 */
function resolveLanguage(
  language: string | undefined,
  model: string,
  languages: ReadonlySet<string>,
): string | undefined {
  const code = language?.toLowerCase() ?? '';
  if (languages.size === 0) {
    if (code === '' || code === 'auto' || code === 'en') return 'en';
    throw invalidArgument(
      'language',
      `model "${model}" is English-only; use "en" or leave the language unset`,
    );
  }
  if (code === '' || code === 'auto') return undefined;
  if (!languages.has(code)) {
    throw invalidArgument(
      'language',
      `"${language}" is not a language of model "${model}"; use one of ${[...languages].join(', ')}`,
    );
  }
  return code;
}

function toIsoCode(whisperCode: string): string {
  return whisperToIso[whisperCode] ?? whisperCode;
}

function toWhisperCode(isoCode: string | undefined): string | undefined {
  return isoCode === undefined ? undefined : (isoToWhisper[isoCode] ?? isoCode);
}

/**
 * Makes `model.generate` detect the language when its options carry a `LanguageDetection`:
 * encode the features, run one decoder step on `<|startoftranscript|>`, take the language token
 * with the highest logit, then generate with that language. While that call runs, an encoder run
 * on the same features (generate's own) returns the output already computed; comparing the
 * features' bytes, not the tensor, keeps this right when generate's seek loop encodes a later
 * window of the audio, and when calls run concurrently.
 */
function enableLanguageDetection(
  model: WhisperModel,
  encoder: OrtSession,
  startToken: number,
  languageTokens: ReadonlyMap<number, string>,
): void {
  const runEncoder = encoder.run.bind(encoder);
  const encoded = new Set<{ readonly features: Float32Array; readonly outputs: Record<string, unknown> }>();
  encoder.run = async (feeds, ...rest) => {
    const features = floatsOf(feeds.input_features);
    if (features !== undefined) {
      for (const entry of encoded) if (sameFloats(entry.features, features)) return entry.outputs;
    }
    return runEncoder(feeds, ...rest);
  };

  const generate = model.generate.bind(model);
  model.generate = async (params) => {
    const request = params[detectLanguage] as LanguageDetection | undefined;
    const features = params.inputs;
    if (request === undefined || !(features instanceof Tensor) || !(features.data instanceof Float32Array))
      return generate(params);
    const outputs = await runEncoder({ input_features: features.ort_tensor });
    const entry = { features: features.data, outputs };
    encoded.add(entry);
    try {
      throwIfAborted(request.signal);
      const { logits } = await model.forward({
        encoder_outputs: new Tensor(outputs.last_hidden_state as Tensor['ort_tensor']),
        decoder_input_ids: new Tensor('int64', BigInt64Array.of(BigInt(startToken)), [1, 1]),
      });
      const scores = logits.to('float32').data as Float32Array;
      const offset = scores.length - (logits.dims.at(-1) ?? 0);
      let best = -Infinity;
      for (const [tokenId, code] of languageTokens) {
        const score = scores[offset + tokenId] ?? -Infinity;
        if (score > best) {
          best = score;
          request.detected = code;
        }
      }
      throwIfAborted(request.signal);
      return await generate({ ...params, language: request.detected });
    } finally {
      encoded.delete(entry);
    }
  };
}

function floatsOf(tensor: unknown): Float32Array | undefined {
  const data = (tensor as { data?: unknown } | undefined)?.data;
  return data instanceof Float32Array ? data : undefined;
}

function sameFloats(a: Float32Array, b: Float32Array): boolean {
  return (
    a === b ||
    (a.length === b.length &&
      Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
        Buffer.from(b.buffer, b.byteOffset, b.byteLength),
      ))
  );
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
