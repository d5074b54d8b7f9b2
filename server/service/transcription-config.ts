import type { Config } from '../config.js';
import type { SpeechRecognizer, TimestampMode } from '../engines/types.js';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import { TimestampGranularity, type TranscriptionConfig } from '../gen/cortex/voice/v1/transcription_pb.js';
import { type InputFormat, validateInputFormat } from '../pipeline/audio-format.js';
import { RECOGNITION_RATE } from '../pipeline/audio-input.js';
import { resolveSegmenterConfig, type SegmenterConfig } from '../pipeline/utterance-segmenter.js';
import { resolveResumePoint, type StreamOrigin } from './resume-point.js';

/** A TranscriptionConfig checked field by field, with the server's defaults filled in. */
export interface TranscriptionSettings {
  readonly format: InputFormat;
  /** ISO 639-1, or undefined to detect. */
  readonly language: string | undefined;
  readonly interimResults: boolean;
  readonly interimIntervalMs: number;
  readonly segmenter: SegmenterConfig;
  readonly timestamps: TimestampMode;
  /** The model the stream's utterances go to. */
  readonly model: string;
  /** Recognise an utterance as soon as its trailing padding is in, before min_silence confirms it. */
  readonly speculativeFinals: boolean;
  /** Where the stream starts on its timeline: the resume point; unset, 0 and utterance 0. */
  readonly origin?: StreamOrigin;
  /** The client resumes a broken stream itself: a drain ends it at its last commit, unflushed. */
  readonly resumable?: boolean;
}

const LANGUAGE = /^[a-z]{2,3}$/;

export function resolveTranscriptionSettings(
  config: TranscriptionConfig | undefined,
  defaults: Config['models'],
  recognizer: SpeechRecognizer,
): TranscriptionSettings {
  if (config === undefined) throw invalidArgument('config', 'missing; set config.audio_format at least');
  const format = validateInputFormat(config.audioFormat);
  const origin = resolveResumePoint(config.resume, format);
  const language = resolveLanguage(config.language, defaults.stt.language);
  const interval =
    config.interimIntervalMs === 0 ? defaults.stt.interim_interval_ms : config.interimIntervalMs;
  if (interval < 250 || interval > 10_000) {
    throw invalidArgument(
      'config.interim_interval_ms',
      `${interval} is out of range; allowed 250 to 10000, or 0 for the default`,
    );
  }
  const endpointing = config.endpointing;
  const segmenter = resolveSegmenterConfig({
    threshold: endpointing?.speechThreshold ?? defaults.vad.threshold,
    minSpeechMs: endpointing?.minSpeechDurationMs ?? defaults.vad.min_speech_ms,
    minSilenceMs: endpointing?.minSilenceDurationMs ?? defaults.vad.min_silence_ms,
    speechPadMs: endpointing?.speechPadMs ?? defaults.vad.speech_pad_ms,
    maxUtteranceMs: Math.floor((recognizer.maxInputSamples / RECOGNITION_RATE) * 1000),
  });
  const timestamps = timestampMode(config.timestamps);
  const model = chooseModel(config.model, language, timestamps, recognizer);
  return {
    format,
    language,
    interimResults: config.interimResults,
    interimIntervalMs: interval,
    segmenter,
    timestamps,
    model,
    speculativeFinals: defaults.stt.speculative_finals,
    origin,
    resumable: config.resumable,
  };
}

/**
 * The stream's model: the one it names (from the allow-list), else the English model for English
 * streams (unless they ask for word times it cannot give and the default can), else the
 * multilingual default. A model that did not load is refused with why.
 */
function chooseModel(
  requested: string,
  language: string | undefined,
  timestamps: TimestampMode,
  recognizer: SpeechRecognizer,
): string {
  let english = recognizer.englishModel;
  // Word times are worth the multilingual model's cost to a stream that asks for them.
  const words = recognizer.wordTimestampModels;
  if (timestamps === 'word' && english !== undefined && words !== undefined && !words.includes(english)) {
    english = words.includes(recognizer.defaultModel) ? undefined : english;
  }
  let model: string;
  if (requested !== '') {
    if (requested !== recognizer.defaultModel && !recognizer.allowedModels.includes(requested)) {
      const allowed = [
        recognizer.defaultModel,
        ...recognizer.allowedModels.filter((id) => id !== recognizer.defaultModel),
      ];
      throw invalidArgument('config.model', `"${requested}" is not offered; allowed: ${allowed.join(', ')}`);
    }
    model = requested;
  } else model = language === 'en' && english !== undefined ? english : recognizer.defaultModel;
  const why = recognizer.unavailableModels?.[model];
  if (why !== undefined) {
    throw new VoiceError(
      Reason.EngineUnavailable,
      `the speech recognition model "${model}" is not loaded: ${why}`,
      {
        retryAfterMs: 5000,
      },
    );
  }
  return model;
}

function resolveLanguage(requested: string, fallback: string): string | undefined {
  const value = (requested === '' ? fallback : requested).trim().toLowerCase();
  if (value === 'auto') return undefined;
  if (!LANGUAGE.test(value)) {
    throw invalidArgument(
      'config.language',
      `"${requested}" is not an ISO 639-1 code; use e.g. "en", or "auto" to detect`,
    );
  }
  return value;
}

function timestampMode(granularity: TimestampGranularity): TimestampMode {
  switch (granularity) {
    case TimestampGranularity.UNSPECIFIED:
      return 'none';
    case TimestampGranularity.SEGMENT:
      return 'segment';
    case TimestampGranularity.WORD:
      return 'word';
    default:
      throw invalidArgument(
        'config.timestamps',
        `${String(granularity)} is not a known granularity; allowed TIMESTAMP_GRANULARITY_UNSPECIFIED, _SEGMENT, _WORD`,
      );
  }
}
