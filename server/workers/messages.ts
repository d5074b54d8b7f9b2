/**
 * What crosses between the main thread and a model worker. Everything here survives the structured
 * clone; audio travels as transferred ArrayBuffers (the sender's copy is detached, nothing is copied).
 */
import type { Recognition, SynthesizedAudio, TimestampMode, VoiceInfo } from '../engines/types.js';
import type { Reason } from '../errors.js';

// --- What a worker loads -------------------------------------------------------------------------

export interface VadSpec {
  readonly version: 'v4' | 'v5' | 'v6';
  readonly threads: number;
}

export interface AsrSpec {
  readonly cacheDir: string;
  readonly allowRemote: boolean;
  /** The multilingual model. */
  readonly defaultModel: string;
  /** The model for English streams, if any. */
  readonly englishModel?: string | undefined;
  readonly dtype: 'fp32' | 'fp16' | 'q8' | 'q4';
  readonly allowedModels: readonly string[];
  readonly device: 'cpu' | 'cuda';
  readonly threads: number;
}

export interface TtsSpec {
  /** Load eSpeak NG (WebAssembly). */
  readonly espeak: boolean;
  /** Voice id used when a call names none. */
  readonly defaultVoice: string;
  readonly neural: {
    readonly cacheDir: string;
    readonly allowRemote: boolean;
    readonly models: readonly { readonly id: string; readonly language: string; readonly speaker?: string }[];
    readonly threads: number;
  };
  /** Kokoro voices (models.tts.kokoro), when enabled. */
  readonly kokoro?: {
    readonly cacheDir: string;
    readonly model: string;
    readonly dtype: 'fp32' | 'fp16' | 'q8' | 'q4';
    readonly voices: readonly string[];
    readonly threads: number;
  };
}

/** The `workerData` of an engine worker: which engines to build, with what settings. */
export interface EngineWorkerData {
  readonly vad?: VadSpec;
  readonly asr?: AsrSpec;
  readonly tts?: TtsSpec;
  /**
   * Enables the job kinds of `TestJobs` (sleep, crash, echo…). Tests only: the server never sets it,
   * and a worker without it rejects those kinds as unknown.
   */
  readonly testHooks?: boolean;
  /**
   * Tests only, with `testHooks`: a worker that finds no file at this path creates it and exits
   * while loading, so the first start of a worker fails and the next succeeds.
   */
  readonly crashOnceWhileLoading?: string;
  /**
   * Tests only, with `testHooks`: the first `times` workers to start exit while loading, counted in
   * the file at `counter` (absent: none yet), so that a pool fails `times` loads and then serves.
   */
  readonly failLoads?: { readonly counter: string; readonly times: number };
}

// --- What a worker reports when ready --------------------------------------------------------------

export type Availability<T> =
  | ({ readonly available: true } & T)
  | { readonly available: false; readonly reason: string };

export interface EngineReport {
  readonly vad?: Availability<{
    readonly model: string;
    readonly frameSamples: number;
    readonly stateLength: number;
  }>;
  readonly asr?: Availability<{
    readonly defaultModel: string;
    /** Undefined when none is configured or it did not load (English then goes to the default). */
    readonly englishModel?: string | undefined;
    readonly maxInputSamples: number;
    readonly allowedModels: readonly string[];
    /** Configured models that did not load, with why (at least one did). */
    readonly unavailableModels: Readonly<Record<string, string>>;
    /** Configured models that give word timestamps. */
    readonly wordTimestampModels: readonly string[];
    /**
     * Each loaded model's cost of one recognition, timed on this worker after its warm-up (1 s and
     * 4 s of silence): compute seconds = fixedSeconds + perAudioSecond × audio seconds. A model whose
     * timing failed is left out; the server then learns its cost from finished jobs.
     */
    readonly costs: Readonly<Record<string, RecognitionCostReport>>;
  }>;
  readonly tts?: Availability<{
    readonly defaultVoice: string;
    readonly voices: readonly VoiceInfo[];
    /** Engines or models that did not load, with why; their voices are not offered. */
    readonly unavailable: readonly { readonly what: string; readonly reason: string }[];
  }>;
}

/** A model's measured cost of one recognition (see EngineReport.asr.costs). */
export interface RecognitionCostReport {
  readonly fixedSeconds: number;
  readonly perAudioSecond: number;
}

// --- Jobs --------------------------------------------------------------------------------------------

export interface VadJob {
  /** Whole 512-sample frames back to back; transferred. */
  readonly frames: Float32Array;
  /** The stream's carried state (SileroVad.stateLength floats); copied, so a failed job loses nothing. */
  readonly state: Float32Array;
}
export interface VadJobResult {
  readonly probabilities: Float32Array;
  readonly state: Float32Array;
}

export interface RecognizeJob {
  /** 16 kHz mono; transferred. */
  readonly audio: Float32Array;
  readonly language: string | undefined;
  readonly timestamps: TimestampMode;
  readonly model: string | undefined;
}

export interface SynthesizeJob {
  readonly text: string;
  readonly voice: string;
  readonly speed: number;
}
export interface SynthesizeJobResult extends SynthesizedAudio {
  /**
   * Always true: the worker time-stretches the audio of engines without a speed parameter (VITS),
   * so the main thread never has to.
   */
  readonly speedApplied: true;
}

/** Job kinds an engine worker serves: payload in, result out. */
export type EngineJobs = {
  vad: { payload: VadJob; result: VadJobResult };
  recognize: { payload: RecognizeJob; result: Recognition };
  synthesize: { payload: SynthesizeJob; result: SynthesizeJobResult };
  voices: { payload: null; result: readonly VoiceInfo[] };
};

/** Job kinds that exist only when `testHooks` is set. */
export type TestJobs = {
  /** Returns its payload, transferring `buffer` both ways. */
  echo: {
    payload: { readonly buffer?: ArrayBuffer; readonly tag?: string };
    result: { readonly buffer?: ArrayBuffer; readonly tag?: string };
  };
  /** Waits `ms`; stops at a cancel unless `ignoreAbort`. Returns the ms waited. */
  sleep: { payload: { readonly ms: number; readonly ignoreAbort?: boolean }; result: number };
  /** Kills the worker: an uncaught exception, process.exit(), or heap exhaustion. */
  crash: { payload: { readonly mode: 'throw' | 'exit' | 'oom' }; result: never };
  /** Throws a VoiceError with this reason, or a plain Error when `reason` is absent. */
  fail: {
    payload: {
      readonly reason?: Reason;
      readonly message: string;
      readonly retryAfterMs?: number;
      readonly info?: Readonly<Record<string, string>>;
    };
    result: never;
  };
  /** Makes the worker exit in the middle of its next `recognize` job, as a crash would. */
  crashOnNextRecognize: { payload: null; result: null };
  /** Byte lengths, in the worker, of the buffers the previous result transferred (0 = transferred). */
  lastTransfer: { payload: null; result: readonly number[] };
  /** The worker thread's own heap and external memory (soak runs), after a GC when `gc` and --expose-gc. */
  memory: { payload: { readonly gc?: boolean }; result: WorkerMemory };
};

/** What one worker thread's isolate holds, in bytes (process.memoryUsage() inside the thread). */
export interface WorkerMemory {
  readonly threadId: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

/** A map of job kinds; a pool is typed by the one its workers serve. */
export type JobMap = { [kind: string]: { payload: unknown; result: unknown } };

// --- Messages ----------------------------------------------------------------------------------------

/** An error as it crosses the thread boundary. */
export interface WireError {
  readonly reason: Reason;
  /** Sent to the caller; generic for unexpected errors. */
  readonly message: string;
  readonly retryAfterMs?: number;
  /** VoiceError.info: the machine-readable facts the caller gets in ErrorInfo; absent when empty. */
  readonly info?: Readonly<Record<string, string>>;
  /** The stack or cause of an unexpected error, for the main thread's log only. */
  readonly detail?: string;
}

export type ToWorker =
  | { readonly type: 'job'; readonly id: number; readonly kind: string; readonly payload: unknown }
  | { readonly type: 'cancel'; readonly id: number }
  /**
   * Finish the jobs running, then exit. onnxruntime's runs cannot be interrupted, and terminating a
   * thread while one is in flight can abort the whole process when its completion finds no thread.
   */
  | { readonly type: 'shutdown' };

export type FromWorker<Report = unknown> =
  | { readonly type: 'ready'; readonly report: Report; readonly loadSeconds: number }
  | {
      readonly type: 'result';
      readonly id: number;
      readonly result: unknown;
      /** Time the job took inside the worker. */
      readonly seconds: number;
      /** Model label of the inference metric; absent for jobs that are not inference. */
      readonly model?: string;
    }
  | { readonly type: 'error'; readonly id: number; readonly error: WireError; readonly seconds: number };
