/**
 * Kokoro-82M voices (`kokoro:<voice>`, e.g. `kokoro:af_heart`): a neural voice whose weights are
 * Apache-2.0, run on onnxruntime-node in this thread, with word and phoneme timing from the model's
 * own per-token durations (the timestamped ONNX export).
 *
 * A call phonemises the text with eSpeak NG (kokoro-phonemes.ts), tokenises it, cuts it into runs of
 * at most 510 tokens at clause or word boundaries, speaks each run with its voice's style vector for
 * that length and Kokoro's own `speed` input (so `nativeSpeed` is true: nothing is time-stretched),
 * and joins the runs. The signal is checked between runs; a run in progress cannot be stopped.
 */
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { invalidArgument, Reason, throwIfAborted, VoiceError } from '../errors.js';
import { type EspeakLibrary, loadEspeakLibrary } from './espeak-library.js';
import {
  KOKORO_STYLE_DIM,
  KOKORO_STYLE_ROWS,
  type KokoroDtype,
  type KokoroModel,
  loadKokoroModel,
} from './kokoro-model.js';
import { phonemize } from './kokoro-phonemes.js';
import {
  KOKORO_MAX_TOKENS,
  kokoroTiming,
  splitRuns,
  styleRow,
  type TimedRun,
  tokenBoundaries,
  tokenize,
} from './kokoro-tokens.js';
import { KOKORO_ID_PREFIX, KOKORO_SAMPLE_RATE, kokoroLanguage, kokoroVoiceInfo } from './kokoro-voices.js';
import type { SpeechSynthesizer, SynthesizedAudio, SynthesizeOptions, VoiceInfo } from './types.js';

export interface KokoroSynthesizerOptions {
  /** models.cache_dir: the model is in `<cacheDir>/<org>/<name>/`. */
  readonly cacheDir: string;
  /** Hub id of the export, e.g. `onnx-community/Kokoro-82M-v1.0-ONNX-timestamped`. */
  readonly model: string;
  readonly dtype: KokoroDtype;
  /** Voice names to offer, e.g. `af_heart`; each needs `voices/<name>.bin`. */
  readonly voices: readonly string[];
  /** onnxruntime intra-op threads. */
  readonly threads: number;
  /** Tokens per run; tests lower it to split short texts. */
  readonly maxTokensPerRun?: number;
}

export interface KokoroLoadReport {
  readonly voices: readonly VoiceInfo[];
  /** Voices (or the whole model, as `what` = the model id) that did not load, with why. */
  readonly unavailable: readonly { readonly what: string; readonly reason: string }[];
}

export interface KokoroSynthesizer extends SpeechSynthesizer {
  /** Loads the model, its voices and eSpeak once; later calls return the same report. Never rejects. */
  load(): Promise<KokoroLoadReport>;
  /** True: speed is Kokoro's own input. */
  readonly nativeSpeed: true;
}

export function createKokoroSynthesizer(options: KokoroSynthesizerOptions): KokoroSynthesizer {
  const maxTokens = options.maxTokensPerRun ?? KOKORO_MAX_TOKENS;
  const folder = join(options.cacheDir, ...options.model.split('/'));
  let loading: Promise<KokoroLoadReport> | undefined;
  let model: KokoroModel | undefined;
  let espeak: EspeakLibrary | undefined;
  let infos: VoiceInfo[] = [];

  async function loadAll(): Promise<KokoroLoadReport> {
    const unavailable: { what: string; reason: string }[] = [];
    const named = options.voices.filter((voice) => {
      if (kokoroLanguage(voice) !== undefined) return true;
      unavailable.push({ what: KOKORO_ID_PREFIX + voice, reason: `"${voice}" is not a Kokoro voice name` });
      return false;
    });
    try {
      const [loaded, library] = await Promise.all([
        loadKokoroModel({ folder, dtype: options.dtype, voices: named, threads: options.threads }),
        loadEspeakLibrary(),
      ]);
      for (const { voice, reason } of loaded.unavailableVoices) {
        unavailable.push({ what: KOKORO_ID_PREFIX + voice, reason });
      }
      const files = new Set(library.voiceFiles.map((file) => file.identifier));
      for (const voice of loaded.model.styles.keys()) {
        const language = kokoroLanguage(voice);
        if (language !== undefined && files.has(language.espeakVoice)) {
          infos.push(kokoroVoiceInfo(voice, options.model));
        } else {
          unavailable.push({
            what: KOKORO_ID_PREFIX + voice,
            reason: `eSpeak NG has no voice ${language?.espeakVoice ?? '?'} to phonemise ${voice}`,
          });
        }
      }
      model = loaded.model;
      espeak = library;
    } catch (error) {
      infos = [];
      unavailable.push({
        what: options.model,
        reason:
          error instanceof VoiceError
            ? error.rawMessage
            : error instanceof Error
              ? error.message
              : String(error),
      });
    }
    return { voices: [...infos], unavailable };
  }

  return {
    nativeSpeed: true,
    load() {
      loading ??= loadAll();
      return loading;
    },
    voices: () => infos,
    async synthesize(text: string, { voice, speed, signal }: SynthesizeOptions): Promise<SynthesizedAudio> {
      throwIfAborted(signal);
      if (!(speed >= 0.5 && speed <= 2)) throw invalidArgument('speed', 'must be between 0.5 and 2.0');
      const info = infos.find((candidate) => candidate.id === voice);
      const language = kokoroLanguage(info?.speaker ?? '');
      const styles = model?.styles.get(info?.speaker ?? '');
      if (model === undefined || espeak === undefined) {
        throw new VoiceError(Reason.EngineUnavailable, `Kokoro (${options.model}) is not loaded`);
      }
      if (info === undefined || language === undefined || styles === undefined) {
        throw new VoiceError(
          Reason.UnknownResource,
          `voice: unknown Kokoro voice "${voice}"; Kokoro voices: ${infos.map((v) => v.id).join(', ') || '(none loaded)'}`,
          { info: { field: 'voice' } },
        );
      }
      // eSpeak runs synchronously; let queued work and aborts through first.
      await yieldToEventLoop();
      throwIfAborted(signal);
      const phrase = phonemize(espeak, text, language, () => signal.aborted);
      throwIfAborted(signal);
      const runs = splitRuns(tokenize(phrase, model.vocab).tokens, phrase, maxTokens);
      const timed: TimedRun[] = [];
      const chunks: Float32Array[] = [];
      let offset = 0;
      for (const tokens of runs) {
        throwIfAborted(signal);
        const ids = BigInt64Array.from([model.padId, ...tokens.map((t) => t.id), model.padId], BigInt);
        const row = styleRow(tokens.length, KOKORO_STYLE_ROWS) * KOKORO_STYLE_DIM;
        const output = await model.run(ids, styles.subarray(row, row + KOKORO_STYLE_DIM), speed);
        const samples = output.waveform.length;
        if (output.durations !== undefined) {
          const bounds = tokenBoundaries(output.durations, tokens.length, samples);
          timed.push({ tokens, bounds, offset, samples });
        }
        chunks.push(output.waveform);
        offset += samples;
      }
      // onnxruntime cannot stop a running session; a call aborted meanwhile drops the result.
      throwIfAborted(signal);
      const samples = new Float32Array(offset);
      let at = 0;
      for (const chunk of chunks) {
        samples.set(chunk, at);
        at += chunk.length;
      }
      const timing = model.timestamped ? kokoroTiming(phrase, timed) : undefined;
      return { samples, sampleRate: KOKORO_SAMPLE_RATE, timing };
    },
  };
}
