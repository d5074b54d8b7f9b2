/**
 * Main-thread engines whose work runs in model worker pools. They implement the engine interfaces,
 * so services and pipelines cannot tell them from in-process engines.
 *
 * Topology: two pools.
 * - `vad`: one worker holding Silero VAD only. Its jobs are tiny (a batch of frames, ~1 ms of CPU per
 *   second of audio) and latency-critical: they must never wait behind a two-second recognition.
 * - `inference`: `performance.workers` workers, each holding the Whisper recognizer and the
 *   synthesis engines, so any worker serves any recognition or synthesis job.
 * VAD jobs are stateless: each carries its stream's recurrent state and 64-sample context in and
 * out, so any VAD worker serves any stream and a worker crash loses no stream state.
 *
 * Priorities inside a pool (lower first): VAD 0, final recognition 1, synthesis 2, interim
 * recognition 3 — finals are always scheduled before interims.
 */

import type {
  EngineCallOptions,
  Recognition,
  RecognizeOptions,
  SpeechRecognizer,
  SpeechSynthesizer,
  SynthesizeOptions,
  VadSession,
  VoiceActivityDetector,
  VoiceInfo,
} from '../engines/types.js';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import type { EngineJobs, EngineReport, RecognitionCostReport, SynthesizeJobResult } from './messages.js';
import type { FinishedJob, WorkerPool } from './pool.js';

export const JobPriority = { vad: 0, final: 1, synthesis: 2, interim: 3 } as const;

/** Recognition audio is 16 kHz mono. */
const RECOGNITION_SAMPLE_RATE = 16_000;

export type EnginePool = WorkerPool<EngineJobs, EngineReport>;

export interface RemoteSynthesizer extends SpeechSynthesizer {
  readonly defaultVoice: string;
  /** Results always have the requested speed applied (VITS audio is time-stretched in the worker). */
  synthesize(text: string, options: SynthesizeOptions): Promise<SynthesizeJobResult>;
}

export interface RemoteEngines {
  readonly vad: VoiceActivityDetector | undefined;
  readonly recognizer: SpeechRecognizer | undefined;
  readonly synthesizer: RemoteSynthesizer | undefined;
  /** Why an engine is undefined, worded for a health status or an UNAVAILABLE message. */
  readonly unavailable: {
    readonly vad?: string;
    readonly recognizer?: string;
    readonly synthesizer?: string;
  };
  /** Each recognition model's cost as the inference workers timed it at start-up, by model id. */
  readonly recognitionCosts: Readonly<Record<string, RecognitionCostReport>>;
}

/** What learns from the inference workers' measured compute times (the capacity estimate). */
export interface InferenceObserver {
  /** A final recognition a worker finished for a waiting caller. */
  observeRecognition(model: string, audioSeconds: number, computeSeconds: number): void;
  /** Compute spent on synthesis, which shares the workers with finals and is not deferred. */
  observeBackground(computeSeconds: number): void;
}

/** The inference pool's onJobDone for an observer: finals teach costs, synthesis counts as load. */
export function observeInference(observer: InferenceObserver): (job: FinishedJob) => void {
  return (job) => {
    if (job.kind === 'synthesize') observer.observeBackground(job.seconds);
    else if (
      job.kind === 'recognize' &&
      job.priority === JobPriority.final &&
      job.outcome === 'result' &&
      job.model !== undefined &&
      job.size !== undefined
    )
      observer.observeRecognition(job.model, job.size, job.seconds);
  };
}

export interface PoolAndReport {
  readonly pool: EnginePool;
  readonly report: EngineReport;
}

/** Engines over started pools; `report` is what `pool.start()` resolved with. */
export function createRemoteEngines(pools: { vad: PoolAndReport; inference: PoolAndReport }): RemoteEngines {
  const unavailable: { vad?: string; recognizer?: string; synthesizer?: string } = {};
  const { vad: vadReport } = pools.vad.report;
  const { asr, tts } = pools.inference.report;

  let vad: VoiceActivityDetector | undefined;
  if (vadReport?.available === true) vad = createRemoteVad(pools.vad.pool, vadReport);
  else unavailable.vad = vadReport?.reason ?? 'no VAD worker is configured';

  let recognizer: SpeechRecognizer | undefined;
  if (asr?.available === true) {
    recognizer = createRemoteRecognizer(pools.inference.pool, asr);
  } else unavailable.recognizer = asr?.reason ?? 'no speech recognition worker is configured';

  let synthesizer: RemoteSynthesizer | undefined;
  if (tts?.available === true) {
    synthesizer = createRemoteSynthesizer(pools.inference.pool, tts.defaultVoice, tts.voices);
  } else unavailable.synthesizer = tts?.reason ?? 'no speech synthesis worker is configured';

  return {
    vad,
    recognizer,
    synthesizer,
    unavailable,
    recognitionCosts: asr?.available === true ? asr.costs : {},
  };
}

/**
 * The array itself, detached from the caller, when it spans its whole buffer; otherwise a copy.
 * Either way the result owns a whole buffer that can be transferred to a worker.
 */
function take(array: Float32Array): Float32Array {
  const whole = array.byteOffset === 0 && array.byteLength === array.buffer.byteLength;
  if (whole && array.buffer instanceof ArrayBuffer && array.byteLength > 0) {
    return structuredClone(array, { transfer: [array.buffer] });
  }
  return array.slice();
}

function createRemoteVad(
  pool: EnginePool,
  report: { model: string; frameSamples: number; stateLength: number },
): VoiceActivityDetector {
  const { frameSamples, stateLength } = report;
  return {
    model: report.model,
    openSession(): VadSession {
      let state: Float32Array | undefined = new Float32Array(stateLength);
      // A stream's batches run in order: each continues from the state the previous one returned.
      let queue: Promise<unknown> = Promise.resolve();
      return {
        frameSamples,
        probabilities(frames, { signal }: EngineCallOptions) {
          if (frames.length % frameSamples !== 0) {
            return Promise.reject(
              invalidArgument(
                'frames',
                `must hold whole frames of ${frameSamples} samples, got ${frames.length}`,
              ),
            );
          }
          const own = take(frames);
          const result = queue.then(async () => {
            if (state === undefined)
              throw new VoiceError(Reason.EngineUnavailable, 'the VAD session is closed');
            if (own.length === 0) return new Float32Array(0);
            // The state goes as a copy: if the job fails, the stream still has it.
            const step = await pool.run(
              'vad',
              { frames: own, state },
              { priority: JobPriority.vad, signal, transfer: [own.buffer as ArrayBuffer] },
            );
            if (state !== undefined) state = step.state;
            return step.probabilities;
          });
          queue = result.catch(() => undefined);
          return result;
        },
        close() {
          state = undefined;
        },
      };
    },
  };
}

function createRemoteRecognizer(
  pool: EnginePool,
  report: Omit<Extract<EngineReport['asr'] & {}, { available: true }>, 'available'>,
): SpeechRecognizer {
  return {
    defaultModel: report.defaultModel,
    englishModel: report.englishModel,
    maxInputSamples: report.maxInputSamples,
    allowedModels: report.allowedModels,
    unavailableModels: report.unavailableModels,
    wordTimestampModels: report.wordTimestampModels,
    recognize(
      audio,
      { language, timestamps, model, priority, signal }: RecognizeOptions,
    ): Promise<Recognition> {
      const own = take(audio);
      return pool.run(
        'recognize',
        { audio: own, language, timestamps, model },
        {
          priority: priority === 'final' ? JobPriority.final : JobPriority.interim,
          signal,
          transfer: [own.buffer as ArrayBuffer],
          size: own.length / RECOGNITION_SAMPLE_RATE,
        },
      );
    },
  };
}

function createRemoteSynthesizer(
  pool: EnginePool,
  defaultVoice: string,
  voices: readonly VoiceInfo[],
): RemoteSynthesizer {
  const list = Object.freeze([...voices]);
  return {
    defaultVoice,
    voices: () => list,
    synthesize(text, { voice, speed, signal }) {
      return pool.run('synthesize', { text, voice, speed }, { priority: JobPriority.synthesis, signal });
    },
  };
}
