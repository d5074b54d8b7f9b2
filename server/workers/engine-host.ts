/**
 * Runs inside a model worker: builds the engines its `workerData` names with the ordinary factories,
 * loads and warms them up once, and turns them into job handlers. An engine that cannot load (model
 * folder missing, voice data broken) does not stop the worker: the report says why, so the server
 * keeps that service NOT_SERVING with the reason while the rest serves. Each recognition model is
 * then timed on two lengths, and its cost reported, so capacity is estimated before the first stream.
 */
import { createEspeakSynthesizer, ESPEAK_DEFAULT_VOICE } from '../engines/espeak-ng.js';
import { createKokoroSynthesizer } from '../engines/kokoro-tts.js';
import { KOKORO_ID_PREFIX } from '../engines/kokoro-voices.js';
import { createSileroVad } from '../engines/silero-vad.js';
import { scaleTiming } from '../engines/speech-timing.js';
import { timeStretch } from '../engines/time-stretch.js';
import { createTransformersRecognizer, type TransformersRecognizer } from '../engines/transformers-asr.js';
import { createTransformersSynthesizer } from '../engines/transformers-tts.js';
import type { SpeechSynthesizer, SynthesizedAudio, VoiceInfo } from '../engines/types.js';
import { Reason, throwIfAborted, VoiceError } from '../errors.js';
import type {
  AsrSpec,
  EngineJobs,
  EngineReport,
  EngineWorkerData,
  RecognitionCostReport,
  TtsSpec,
  VadSpec,
} from './messages.js';

export interface JobOutcome {
  readonly result: unknown;
  /** Buffers inside `result` to move to the main thread. */
  readonly transfer?: readonly ArrayBuffer[];
  /** Model label of the inference metric. */
  readonly model?: string;
}

export type JobHandler = (payload: unknown, signal: AbortSignal) => Promise<JobOutcome>;

export interface EngineHost {
  readonly report: EngineReport;
  readonly handlers: ReadonlyMap<string, JobHandler>;
}

type Handlers = Map<string, JobHandler>;

/** Builds, loads and warms up every engine named in `data`. Rejects only on unexpected failures. */
export async function loadEngines(data: EngineWorkerData): Promise<EngineHost> {
  const handlers: Handlers = new Map();
  const report: { -readonly [K in keyof EngineReport]: EngineReport[K] } = {};
  if (data.vad !== undefined) report.vad = await loadVad(data.vad, handlers);
  if (data.asr !== undefined) report.asr = await loadAsr(data.asr, handlers);
  if (data.tts !== undefined) report.tts = await loadTts(data.tts, handlers);
  return { report, handlers };
}

function messageOf(error: unknown): string {
  if (error instanceof VoiceError) return error.rawMessage;
  return error instanceof Error ? error.message : String(error);
}

/** The array itself when it owns its whole buffer, else a copy that does: only whole buffers are moved. */
function owning(array: Float32Array): Float32Array {
  const whole = array.byteOffset === 0 && array.byteLength === array.buffer.byteLength;
  return whole && array.buffer instanceof ArrayBuffer ? array : array.slice();
}

async function loadVad(spec: VadSpec, handlers: Handlers): Promise<NonNullable<EngineReport['vad']>> {
  let vad: Awaited<ReturnType<typeof createSileroVad>>;
  try {
    vad = await createSileroVad({ version: spec.version, threads: spec.threads });
    await vad.infer(new Float32Array(4 * 512), vad.initialState());
  } catch (error) {
    return { available: false, reason: messageOf(error) };
  }
  const handler = async (payload: EngineJobs['vad']['payload'], signal: AbortSignal): Promise<JobOutcome> => {
    signal.throwIfAborted();
    const { probabilities, state } = await vad.infer(payload.frames, payload.state);
    return {
      result: { probabilities, state } satisfies EngineJobs['vad']['result'],
      transfer: [probabilities.buffer as ArrayBuffer, state.buffer as ArrayBuffer],
      model: vad.model,
    };
  };
  handlers.set('vad', handler as JobHandler);
  return { available: true, model: vad.model, frameSamples: 512, stateLength: vad.stateLength };
}

async function loadAsr(spec: AsrSpec, handlers: Handlers): Promise<NonNullable<EngineReport['asr']>> {
  const recognizer = createTransformersRecognizer(spec);
  // Each configured model stands on its own: a missing English model sends English to the
  // multilingual one, a missing multilingual model leaves English serving.
  const unavailableModels: Record<string, string> = {};
  const configured = [...new Set([spec.defaultModel, ...(spec.englishModel ? [spec.englishModel] : [])])];
  for (const id of configured) {
    try {
      await recognizer.warmUp(id);
    } catch (error) {
      unavailableModels[id] = messageOf(error);
    }
  }
  if (configured.every((id) => unavailableModels[id] !== undefined)) {
    return { available: false, reason: configured.map((id) => unavailableModels[id]).join('; ') };
  }
  const costs: Record<string, RecognitionCostReport> = {};
  for (const id of configured) {
    if (unavailableModels[id] !== undefined) continue;
    try {
      costs[id] = await calibrate(recognizer, id);
    } catch {
      // No cost reported: the server learns it from the model's first finished jobs.
    }
  }
  const handler = async (
    { audio, language, timestamps, model }: EngineJobs['recognize']['payload'],
    signal: AbortSignal,
  ): Promise<JobOutcome> => {
    const result = await recognizer.recognize(audio, {
      language,
      timestamps,
      model,
      signal,
      priority: 'final',
    });
    return { result, model: result.model };
  };
  handlers.set('recognize', handler as JobHandler);
  const english = spec.englishModel;
  return {
    available: true,
    defaultModel: recognizer.defaultModel,
    englishModel: english !== undefined && unavailableModels[english] === undefined ? english : undefined,
    maxInputSamples: recognizer.maxInputSamples,
    allowedModels: recognizer.allowedModels,
    unavailableModels,
    wordTimestampModels: configured.filter((id) => recognizer.hasWordTimestamps(id)),
    costs,
  };
}

/** Seconds of audio timed by the calibration: two lengths separate the fixed and per-second costs. */
const CALIBRATION_SECONDS = [1, 4] as const;
/** Recognizers take 16 kHz mono. */
const CALIBRATION_RATE = 16_000;

/**
 * Times one recognition of each calibration length (silence, after the warm-up, with language
 * detection as an "auto" stream has it) and fits compute seconds = fixed + perSecond × seconds.
 * Silence decodes fewer tokens than speech, so this tends to be low; finished jobs correct it.
 */
async function calibrate(recognizer: TransformersRecognizer, model: string): Promise<RecognitionCostReport> {
  const signal = new AbortController().signal;
  const times: number[] = [];
  for (const seconds of CALIBRATION_SECONDS) {
    const audio = new Float32Array(seconds * CALIBRATION_RATE);
    const started = performance.now();
    await recognizer.recognize(audio, {
      language: undefined,
      timestamps: 'none',
      model,
      signal,
      priority: 'final',
    });
    times.push((performance.now() - started) / 1000);
  }
  const [first = 0, second = 0] = times;
  const [shortSeconds, longSeconds] = CALIBRATION_SECONDS;
  const perAudioSecond = Math.max(0, (second - first) / (longSeconds - shortSeconds));
  return { fixedSeconds: Math.max(0, first - perAudioSecond * shortSeconds), perAudioSecond };
}

/** A loaded synthesis engine and the voice ids it serves (those starting with `prefix`). */
interface TtsEngine {
  readonly prefix: string;
  readonly engine: SpeechSynthesizer;
  /** False: the engine ignores speed and its audio is time-stretched here. */
  readonly nativeSpeed: boolean;
}

async function loadTts(spec: TtsSpec, handlers: Handlers): Promise<NonNullable<EngineReport['tts']>> {
  const unavailable: { what: string; reason: string }[] = [];
  const voices: VoiceInfo[] = [];
  const engines: TtsEngine[] = [];
  const warm = { signal: new AbortController().signal, speed: 1 };

  if (spec.espeak) {
    const defaultVoice = spec.defaultVoice.startsWith('espeak:') ? spec.defaultVoice : ESPEAK_DEFAULT_VOICE;
    const engine = createEspeakSynthesizer({ defaultVoice });
    try {
      await engine.load();
      await engine.synthesize('ready', { ...warm, voice: defaultVoice });
      engines.push({ prefix: 'espeak:', engine, nativeSpeed: true });
      voices.push(...engine.voices());
    } catch (error) {
      unavailable.push({ what: 'espeak-ng', reason: messageOf(error) });
    }
  }
  if (spec.neural.models.length > 0) {
    const engine = createTransformersSynthesizer(spec.neural);
    const loaded = await engine.load();
    for (const model of loaded.unavailable) unavailable.push({ what: model.model, reason: model.reason });
    for (const voice of loaded.voices) {
      try {
        const audio = await engine.synthesize('ready', { ...warm, voice: voice.id });
        // Also compiles the stretcher's hot loops before the first real call.
        timeStretch(audio.samples, audio.sampleRate, 1.5);
        voices.push(voice);
      } catch (error) {
        unavailable.push({ what: voice.id, reason: messageOf(error) });
      }
    }
    if (loaded.voices.length > 0) engines.push({ prefix: 'vits:', engine, nativeSpeed: engine.nativeSpeed });
  }
  if (spec.kokoro !== undefined) {
    const engine = createKokoroSynthesizer(spec.kokoro);
    const loaded = await engine.load();
    unavailable.push(...loaded.unavailable);
    const [first] = loaded.voices;
    try {
      // One warm-up: every voice runs the same session.
      if (first !== undefined) await engine.synthesize('ready', { ...warm, voice: first.id });
      voices.push(...loaded.voices);
      if (first !== undefined)
        engines.push({ prefix: KOKORO_ID_PREFIX, engine, nativeSpeed: engine.nativeSpeed });
    } catch (error) {
      unavailable.push({ what: spec.kokoro.model, reason: messageOf(error) });
    }
  }

  const byId = new Map(voices.map((voice) => [voice.id, voice]));
  if (!byId.has(spec.defaultVoice)) {
    const why = unavailable.map((u) => `${u.what}: ${u.reason}`).join('; ');
    return {
      available: false,
      reason:
        `the default voice "${spec.defaultVoice}" (models.tts.voice) is not available` +
        (voices.length > 0 ? `; loaded voices: ${voices.length}` : '; no voice loaded') +
        (why === '' ? '' : ` (${why})`),
    };
  }

  const synthesize = async (
    { text, voice, speed }: EngineJobs['synthesize']['payload'],
    signal: AbortSignal,
  ): Promise<JobOutcome> => {
    const id = voice === '' ? spec.defaultVoice : voice;
    const options = { voice: id, speed, signal };
    // By id prefix; an id no engine claims goes to eSpeak (or the only engine), which names valid voices.
    const chosen =
      engines.find((candidate) => id.startsWith(candidate.prefix)) ??
      engines.find((candidate) => candidate.prefix === 'espeak:') ??
      engines[0];
    if (chosen === undefined) throw new VoiceError(Reason.UnknownResource, `voice: unknown voice "${voice}"`);
    const audio: SynthesizedAudio = await chosen.engine.synthesize(text, options);
    const { nativeSpeed } = chosen;
    // Stretched here, in the worker, so the main thread never does this CPU work.
    const stretched = nativeSpeed ? audio.samples : timeStretch(audio.samples, audio.sampleRate, speed);
    throwIfAborted(signal);
    const samples = owning(stretched);
    const info = byId.get(id);
    return {
      result: {
        samples,
        sampleRate: audio.sampleRate,
        timing:
          audio.timing === undefined || nativeSpeed
            ? audio.timing
            : scaleTiming(audio.timing, samples.length / Math.max(1, audio.samples.length), samples.length),
        speedApplied: true,
      } satisfies EngineJobs['synthesize']['result'],
      transfer: [samples.buffer as ArrayBuffer],
      model: info === undefined ? 'unknown' : info.model === '' ? info.engine : info.model,
    };
  };
  handlers.set('synthesize', synthesize as JobHandler);
  handlers.set('voices', async () => ({ result: voices }));
  return { available: true, defaultVoice: spec.defaultVoice, voices, unavailable };
}
