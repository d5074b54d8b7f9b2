/**
 * Whisper's own language detection for transformers.js, which has none: a multilingual model given
 * no language is prompted with `<|en|>`. One decoder step on `<|startoftranscript|>` alone over the
 * utterance's encoder output, argmax over the language tokens, as Whisper's `detect_language` does.
 * It runs inside the pipeline's call to `model.generate`, on the features the pipeline computed, and
 * its encoder output is handed back when generate encodes the same features, so the encoder runs
 * once. The extra cost is that one decoder step.
 */
import { Tensor } from '@huggingface/transformers';
import { throwIfAborted } from '../errors.js';

/** The slice of transformers' WhisperForConditionalGeneration the engine uses. */
export interface WhisperModel {
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
export interface OrtSession {
  readonly outputNames: readonly string[];
  run(feeds: Record<string, unknown>, ...rest: unknown[]): Promise<Record<string, unknown>>;
}

/**
 * Passed to the pipeline under the `detectLanguage` symbol; the pipeline hands its options on to
 * `model.generate`, where the wrapper installed by `enableLanguageDetection` reads it.
 */
export interface LanguageDetection {
  readonly signal: AbortSignal;
  /** The detected language's Whisper code, once detected. */
  detected?: string;
}

export const detectLanguage = Symbol('detectLanguage');

/**
 * Makes `model.generate` detect the language when its options carry a `LanguageDetection`: encode the features, run one decoder step on `<|startoftranscript|>`, take the language token
 * with the highest logit, then generate with that language. While that call runs, an encoder run
 * on the same features (generate's own) returns the output already computed; comparing the
 * features' bytes, not the tensor, keeps this right when generate's seek loop encodes a later
 * window of the audio, and when calls run concurrently.
 */
export function enableLanguageDetection(
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
