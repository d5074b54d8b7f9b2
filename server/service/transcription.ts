import type { Config } from '../config.js';
import type { EngineSlot } from '../engines/engine-slot.js';
import type { SpeechRecognizer, VoiceActivityDetector } from '../engines/types.js';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import type { TranscribeRequest, Transcription } from '../gen/cortex/voice/v1/transcription_pb.js';
import { RECOGNITION_RATE } from '../pipeline/audio-input.js';
import { admit, admitStream, type SharedServiceParts } from './admission.js';
import type { CapacityEstimator, CapacityStream } from './capacity.js';
import type { CallContext, ServiceHandlers } from './context.js';
import { drainedTranscription, endOnFinish, firstRequest, sessionDrained, whenFinished } from './drain.js';
import { type TranscribeHooks, type TranscribeSessionDeps, transcribeStream } from './transcribe-session.js';
import { resolveTranscriptionSettings, type TranscriptionSettings } from './transcription-config.js';
import {
  ANONYMOUS_OWNER,
  createTranscriptionSessions,
  type TranscriptionSessionOptions,
} from './transcription-sessions.js';

export interface TranscriptionEngines {
  readonly vad: EngineSlot<VoiceActivityDetector>;
  readonly recognizer: EngineSlot<SpeechRecognizer>;
}

export interface TranscriptionParts extends SharedServiceParts {
  /**
   * Admission of live streams by capacity (performance.max_final_delay_ms) and the estimate behind
   * GetCapacity; without it streams are only counted by the shared admission.
   */
  readonly capacity?: CapacityEstimator;
  /** A live stream was refused for capacity (the refusals metric). */
  readonly onCapacityRefusal?: (model: string) => void;
  /** Limits of StartTranscriptionSession sessions (service.sessions.*); DEFAULT_SESSION_LIMITS without them. */
  readonly sessions?: SessionLimits;
}

/** The configurable limits of live sessions, as in service.sessions. */
export type SessionLimits = Pick<
  TranscriptionSessionOptions,
  'gapTimeoutMs' | 'idleTimeoutMs' | 'maxPerCaller'
>;

/** service.sessions.gap_timeout_ms, idle_timeout_ms and max_per_caller by default. */
export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  gapTimeoutMs: 2000,
  idleTimeoutMs: 30_000,
  maxPerCaller: 20,
};

/** A whole clip is fed to the pipeline in slices of this size, like a stream. */
const FILE_SLICE_BYTES = 64 * 1024;

/** Handlers of cortex.voice.v1.Transcription. */
export function createTranscriptionService(
  engines: TranscriptionEngines,
  config: Config,
  shared: TranscriptionParts,
): ServiceHandlers<typeof Transcription> {
  const limits = {
    maxChunkBytes: config.performance.max_audio_chunk_bytes,
    maxAudioSeconds: config.performance.max_audio_seconds,
  };
  const dependencies = (ctx: CallContext): TranscribeSessionDeps => ({
    vad: engines.vad.require(),
    recognizer: engines.recognizer.require(),
    limits,
    onAudio: (seconds) => shared.onAudio?.(seconds, ctx),
  });
  const sessionLimits = shared.sessions ?? DEFAULT_SESSION_LIMITS;
  const sessions = createTranscriptionSessions({ ...sessionLimits, maxChunkBytes: limits.maxChunkBytes });
  /** Admits a live stream by capacity; its dependencies then report to the estimate. */
  const admitLive = (deps: TranscribeSessionDeps, model: string) => {
    const stream =
      shared.capacity === undefined
        ? undefined
        : admitStream(shared.capacity, model, shared.onCapacityRefusal);
    return { stream, deps: stream === undefined ? deps : reportingTo(stream, deps) };
  };

  return {
    async *transcribe(requests, ctx) {
      const deps = dependencies(ctx);
      using _slot = admit(shared.admission);
      const iterator = requests[Symbol.asyncIterator]();
      const first = await firstRequest(iterator, ctx.finishSignal);
      if (first === undefined) throw drainedTranscription(0);
      if (first.done)
        throw invalidArgument('config', 'missing; the first TranscribeRequest must carry config');
      if (first.value.request.case !== 'config') {
        throw first.value.request.case === 'audio'
          ? new VoiceError(
              Reason.OutOfOrder,
              'audio arrived before config; the first TranscribeRequest must carry config',
            )
          : emptyRequest();
      }
      const settings = resolveTranscriptionSettings(
        first.value.request.value,
        config.models,
        deps.recognizer,
      );
      // Refused here, before any audio is read, when the stream would overload the workers.
      const live = admitLive(deps, settings.model);
      using _stream = live.stream;
      // At a drain's grace end the audio input ends: the pipeline flushes as on half-close.
      const audio = endOnFinish(audioOf(iterator), ctx.finishSignal);
      const progress = trackProgress(settings, () => audio.cut);
      yield* transcribeStream(audio, settings, live.deps, ctx.signal, progress.hooks);
      if (audio.cut) throw progress.drained();
    },

    async *startTranscriptionSession(request, ctx) {
      const deps = dependencies(ctx);
      using _slot = admit(shared.admission);
      const settings = resolveTranscriptionSettings(request.config, config.models, deps.recognizer);
      // Admitted exactly as Transcribe, before the session exists.
      const live = admitLive(deps, settings.model);
      using _stream = live.stream;
      using session = sessions.open(ownerOf(ctx), ctx.signal);
      yield {
        sessionStarted: {
          sessionId: session.id,
          gapTimeoutMs: sessionLimits.gapTimeoutMs,
          idleTimeoutMs: sessionLimits.idleTimeoutMs,
          maxChunkBytes: limits.maxChunkBytes,
        },
      };
      // At a drain's grace end the session applies no more chunks; those applied are flushed.
      let cut = false;
      using _finish = whenFinished(ctx.finishSignal, () => {
        cut = session.finish(sessionDrained(session.id));
      });
      const progress = trackProgress(settings, () => cut);
      try {
        yield* transcribeStream(session.audio, settings, live.deps, ctx.signal, progress.hooks);
      } catch (error) {
        session.failed(error);
        throw error;
      }
      if (cut) throw progress.drained();
    },

    async appendSessionAudio(request, ctx) {
      return { acceptedThrough: await sessions.append(ownerOf(ctx), request, ctx.signal) };
    },

    async transcribeFile(request, ctx) {
      const deps = dependencies(ctx);
      using _slot = admit(shared.admission);
      const settings = {
        ...resolveTranscriptionSettings(request.config, config.models, deps.recognizer),
        interimResults: false,
        // A clip arrives at once: speculating would only start finals that pauses cancel.
        speculativeFinals: false,
      };
      if (request.audio.length === 0) throw invalidArgument('audio', 'empty; send the whole clip');
      let analysedMs = 0;
      const results = [];
      const stream = transcribeStream(slices(request.audio), settings, deps, ctx.signal, {
        onProgress: (offsetMs) => {
          analysedMs = offsetMs;
        },
      });
      for await (const response of stream) {
        if (response.event?.case === 'result') results.push(response.event.value);
      }
      return { results, durationMs: Math.round(analysedMs) };
    },

    async getCapacity() {
      const snapshot = shared.capacity?.snapshot();
      if (snapshot === undefined) {
        return {
          maxFinalDelayMs: config.performance.max_final_delay_ms,
          workers: config.performance.workers,
        };
      }
      return {
        maxFinalDelayMs: snapshot.maxFinalDelayMs,
        workers: snapshot.workers,
        admittedStreams: snapshot.admittedStreams,
        loadRatio: snapshot.loadRatio,
        speechRatio: snapshot.speechRatio,
        meanUtteranceSeconds: snapshot.meanUtteranceSeconds,
        refusedStreams: BigInt(snapshot.refusedStreams),
        models: snapshot.models.map((model) => ({ ...model })),
      };
    },
  };
}

/**
 * The session's dependencies, reporting to the stream's capacity estimate: the audio analysed and
 * each utterance sent to final recognition (speech ratio, utterance length). `hasSpareCapacity` is
 * there for the session to ask before it starts an interim recognition.
 */
function reportingTo(stream: CapacityStream, deps: TranscribeSessionDeps): TranscribeSessionDeps {
  const { recognizer, onAudio } = deps;
  const observed = {
    ...deps,
    recognizer: {
      ...recognizer,
      recognize: (audio: Float32Array, options: Parameters<SpeechRecognizer['recognize']>[1]) => {
        // Measured before the call: the engine may take the buffer.
        if (options.priority === 'final') stream.utterance(audio.length / RECOGNITION_RATE);
        return recognizer.recognize(audio, options);
      },
    },
    onAudio: (seconds: number) => {
      onAudio?.(seconds);
      stream.audio(seconds);
    },
    hasSpareCapacity: () => stream.hasSpareCapacity(),
  };
  return observed;
}

/**
 * How far a stream got, for the status of a drained stream: the audio analysed (all of it final, as
 * the drain flushed it), or for a resumable stream, which a drain leaves unflushed, its last commit.
 */
function trackProgress(settings: TranscriptionSettings, cut: () => boolean) {
  const originMs = settings.origin?.offsetMs ?? 0;
  let analysedMs = 0;
  let committedMs: number | undefined;
  const resumable = settings.resumable === true;
  return {
    hooks: {
      onProgress: (offsetMs: number) => {
        analysedMs = offsetMs;
      },
      onCommit: (offsetMs: number) => {
        committedMs = offsetMs;
      },
      leaveUnfinished: () => resumable && cut(),
    } satisfies TranscribeHooks,
    drained: () =>
      resumable
        ? drainedTranscription(Math.max(0, (committedMs ?? originMs) - originMs), committedMs ?? originMs)
        : drainedTranscription(analysedMs),
  };
}

/**
 * Who owns the sessions a call opens: the caller's id (an API key's, or the key behind a client
 * token), or, for a call without credentials, the one anonymous owner all such calls share.
 */
function ownerOf(ctx: CallContext): string {
  return ctx.caller === undefined ? ANONYMOUS_OWNER : `caller:${ctx.caller.id}`;
}

async function* audioOf(iterator: AsyncIterator<TranscribeRequest>): AsyncGenerator<Uint8Array> {
  while (true) {
    const next = await iterator.next();
    if (next.done) return;
    const request = next.value.request;
    if (request.case === 'audio') yield request.value;
    else if (request.case === 'config') {
      throw new VoiceError(
        Reason.OutOfOrder,
        'config: sent twice; only the first TranscribeRequest may carry config',
      );
    } else throw emptyRequest();
  }
}

async function* slices(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += FILE_SLICE_BYTES) {
    yield bytes.subarray(offset, offset + FILE_SLICE_BYTES);
  }
}

function emptyRequest(): VoiceError {
  return invalidArgument('request', 'a TranscribeRequest must carry config or audio');
}
