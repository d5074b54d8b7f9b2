/**
 * Engine interfaces. Services and pipelines depend on these, never on a concrete engine, so the same
 * pipeline runs over in-process engines in tests and worker-pool engines in the server.
 */

/** Mono PCM audio as 32-bit floats in [-1, 1]. */
export interface PcmAudio {
  readonly samples: Float32Array;
  readonly sampleRate: number;
}

/** Options every engine call takes. */
export interface EngineCallOptions {
  /** Aborts queued or running work; the engine rejects with the signal's reason. */
  readonly signal: AbortSignal;
}

/** A piece of text with times in milliseconds relative to the start of the audio it came from. */
export interface TimedSpan {
  readonly text: string;
  readonly startMs: number;
  readonly endMs: number;
}

export type TimestampMode = 'none' | 'segment' | 'word';

export interface RecognizeOptions extends EngineCallOptions {
  /** ISO 639-1 code, or undefined to detect. */
  readonly language: string | undefined;
  readonly timestamps: TimestampMode;
  /** Finals are scheduled before interims. */
  readonly priority: 'final' | 'interim';
  /** Model id; undefined uses the engine's default. */
  readonly model: string | undefined;
}

export interface Recognition {
  readonly text: string;
  /** The language used or detected, ISO 639-1. */
  readonly language: string;
  readonly model: string;
  readonly segments: readonly TimedSpan[];
  readonly words: readonly TimedSpan[];
}

/** Speech recognition over 16 kHz mono audio. */
export interface SpeechRecognizer {
  /** The multilingual model: streams in another language than English, or detecting it, use it. */
  readonly defaultModel: string;
  /** The model English streams use when they name none; undefined sends them to the default. */
  readonly englishModel?: string | undefined;
  /** Models a stream may ask for (the default and English models among them). */
  readonly allowedModels: readonly string[];
  /** Configured models that could not be loaded, with why; a stream routed to one is refused. */
  readonly unavailableModels?: Readonly<Record<string, string>> | undefined;
  /** Loaded models that give word timestamps; English streams asking for words avoid the others. */
  readonly wordTimestampModels?: readonly string[] | undefined;
  /** Longest audio the model takes in one call, in samples at 16 kHz. */
  readonly maxInputSamples: number;
  /**
   * The engine may take `audio`'s buffer: a worker-pool engine transfers an array that spans its
   * whole buffer to the worker, so the caller's array is empty afterwards (a view into a larger
   * buffer is copied instead). Do not use the array after the call; pass a copy to keep it.
   */
  recognize(audio: Float32Array, options: RecognizeOptions): Promise<Recognition>;
}

/**
 * Speech probability per 512-sample frame of 16 kHz audio, with state kept per stream. Frames go in
 * batches: a worker-pool VAD sends one message per batch, not per frame (31 frames a second).
 */
export interface VadSession {
  /** Frame length in samples at 16 kHz. */
  readonly frameSamples: number;
  /**
   * Speech probabilities, in [0, 1], of the stream's next `frames.length / frameSamples` frames
   * (`frames` holds whole frames back to back). Calls run in the order made, each continuing from
   * the state the previous one left. The engine may take `frames`' buffer (see `recognize`).
   */
  probabilities(frames: Float32Array, options: EngineCallOptions): Promise<Float32Array>;
  /** Releases the stream's state. */
  close(): void;
}

export interface VoiceActivityDetector {
  readonly model: string;
  openSession(): VadSession;
}

/** A voice one synthesis engine offers. */
export interface VoiceInfo {
  /** Stable id: engine, model and speaker. */
  readonly id: string;
  readonly name: string;
  readonly language: string;
  readonly engine: string;
  readonly model: string;
  readonly speaker: string;
  readonly sampleRate: number;
}

/** A word of a synthesized text and where its audio lies. */
export interface SpokenWord {
  /** UTF-16 offsets of the word in the text given to `synthesize`, end exclusive. */
  readonly start: number;
  readonly end: number;
  /** Samples of the audio returned, end exclusive. */
  readonly startSample: number;
  readonly endSample: number;
}

/** A phoneme of synthesized audio: its IPA symbol (empty for a pause) and its samples. */
export interface SpokenPhoneme {
  readonly ipa: string;
  readonly startSample: number;
  readonly endSample: number;
}

/** Where each word and phoneme of a synthesis is spoken, in order. */
export interface SpeechTiming {
  readonly words: readonly SpokenWord[];
  readonly phonemes: readonly SpokenPhoneme[];
}

/** Synthesized audio, with its timing when the engine knows it. */
export interface SynthesizedAudio extends PcmAudio {
  readonly timing?: SpeechTiming | undefined;
}

export interface SynthesizeOptions extends EngineCallOptions {
  readonly voice: string;
  /** 0.5 to 2.0; changes duration, not pitch. */
  readonly speed: number;
}

/** Text-to-speech for one piece of text (a sentence or clause). */
export interface SpeechSynthesizer {
  voices(): readonly VoiceInfo[];
  synthesize(text: string, options: SynthesizeOptions): Promise<SynthesizedAudio>;
}
