import type { MessageInitShape } from '@bufbuild/protobuf';
import type { Recognition, SpeechRecognizer, TimedSpan, VoiceActivityDetector } from '../engines/types.js';
import { Reason, VoiceError } from '../errors.js';
import type {
  TranscribeResponseSchema,
  TranscriptResultSchema,
} from '../gen/cortex/voice/v1/transcription_pb.js';
import { type AudioInputLimits, toRecognitionAudio } from '../pipeline/audio-input.js';
import { createChannel, responsesOf } from '../pipeline/channel.js';
import { detectSpeech } from '../pipeline/speech-detector.js';
import {
  createUtteranceSegmenter,
  type PartialUtteranceEvent,
  type SpeculationEvent,
} from '../pipeline/utterance-segmenter.js';
import { type CommitPoint, createAudioCommits } from './audio-commits.js';
import { createSpeculativeFinal } from './speculative-final.js';
import type { TranscriptionSettings } from './transcription-config.js';

export type TranscribeResponseInit = MessageInitShape<typeof TranscribeResponseSchema>;
type ResultInit = MessageInitShape<typeof TranscriptResultSchema>;

export interface TranscribeSessionDeps {
  readonly vad: VoiceActivityDetector;
  readonly recognizer: SpeechRecognizer;
  readonly limits: AudioInputLimits;
  /** Seconds of audio analysed, reported as they are (for the audio-seconds metric). */
  readonly onAudio?: ((seconds: number) => void) | undefined;
  /**
   * Whether work that may be thrown away — an interim, a speculative final — may start now (no job
   * waiting, load under the limit): a running recognition cannot be pre-empted, so under load only
   * finals run. Absent: always.
   */
  readonly hasSpareCapacity?: (() => boolean) | undefined;
}

const SAMPLES_PER_MS = 16;

/** Job priorities in the worker pool: finals always go before interims. */
const FINAL_PRIORITY = 'final' as const;
const INTERIM_PRIORITY = 'interim' as const;

/**
 * One transcription: audio chunks in, events out. Speech events are sent as the VAD decides; each
 * utterance is recognised as soon as it ends, in parallel with the audio that follows, and finals
 * are sent in utterance order. With speculative finals, recognition starts once the silence has
 * covered the trailing padding, with the very samples the utterance will have if the silence holds;
 * the utterance then reuses it, and speech that resumes drops it unsent. Interim results
 * re-recognise the growing utterance every `interimIntervalMs` of audio and are dropped once the
 * utterance's final (or its speculation) is under way. When the audio ends every pending final is
 * delivered; when the call is aborted, all work stops.
 */
export interface TranscribeHooks {
  /** How much of the audio has been analysed, in milliseconds from its first sample, after each batch. */
  readonly onProgress?: (offsetMs: number) => void;
  /** Each AudioCommitted point sent, on the stream's timeline. */
  readonly onCommit?: (offsetMs: number) => void;
  /**
   * Asked when the audio ends: true when the stream ends to be continued by another (a drain cut
   * the input of a resumable stream), so the utterance in progress is left unrecognised and the
   * timeline is committed no further than its last point inside the audio.
   */
  readonly leaveUnfinished?: () => boolean;
}

export function transcribeStream(
  audio: AsyncIterable<Uint8Array>,
  settings: TranscriptionSettings,
  deps: TranscribeSessionDeps,
  signal: AbortSignal,
  hooks: TranscribeHooks = {},
): AsyncIterable<TranscribeResponseInit> {
  const out = createChannel<TranscribeResponseInit>();
  const vadSession = deps.vad.openSession();
  const origin = settings.origin ?? { offsetMs: 0, nextUtteranceIndex: 0 };
  const originSample = origin.offsetMs * SAMPLES_PER_MS;
  const segmenter = createUtteranceSegmenter(settings.segmenter, {
    speculate: settings.speculativeFinals,
    originSample,
    firstUtteranceIndex: origin.nextUtteranceIndex,
  });
  let inputSamples = 0;
  let inputRate: number | undefined;
  const commits = createAudioCommits({
    originMs: origin.offsetMs,
    firstUtteranceIndex: origin.nextUtteranceIndex,
    frameSamples: vadSession.frameSamples,
    speechPadMs: settings.segmenter.speechPadMs,
    inputRate: () => inputRate,
  });
  const commit = (point: CommitPoint | undefined) => {
    if (point === undefined) return;
    hooks.onCommit?.(point.offsetMs);
    out.push({
      event: {
        case: 'audioCommitted',
        value: { offsetMs: BigInt(point.offsetMs), nextUtteranceIndex: point.nextUtteranceIndex },
      },
    });
  };
  let finals: Promise<void> = Promise.resolve();
  // A final that cannot be computed ends the stream at once (after the finals before it), and
  // stops the work still running for it.
  const stop = new AbortController();
  const work = AbortSignal.any([signal, stop.signal]);
  let interim: { utterance: number; endMs: number; controller: AbortController } | undefined;
  let lastInterimEndMs = -Infinity;
  let finalisedUtterance = -1;
  let analysedMs = origin.offsetMs;

  // With language detection on, an utterance's first interim detects it and its later interims
  // reuse it; the final detects again on the whole utterance.
  let detected: { utterance: number; language: string } | undefined;

  const recognize = (
    samples: Float32Array,
    priority: 'final' | 'interim',
    callSignal: AbortSignal,
    language = settings.language,
  ) =>
    deps.recognizer.recognize(samples, {
      signal: callSignal,
      language,
      timestamps: priority === FINAL_PRIORITY ? settings.timestamps : 'none',
      priority,
      model: settings.model,
    });

  const recognizeFinal = async (samples: Float32Array, callSignal = work): Promise<Recognition> => {
    try {
      // The worker may take the buffer; keep a copy in case a crashed worker means one retry.
      return await recognize(samples.slice(), FINAL_PRIORITY, callSignal);
    } catch (error) {
      if (!(error instanceof VoiceError) || error.reason !== Reason.WorkerCrashed || callSignal.aborted)
        throw error;
      return recognize(samples, FINAL_PRIORITY, callSignal);
    }
  };
  // A final-to-be: final priority, and the same retry, since the utterance may claim it.
  const speculative = createSpeculativeFinal((samples, speculation) =>
    recognizeFinal(samples, AbortSignal.any([work, speculation])),
  );

  const startInterim = (partial: PartialUtteranceEvent) => {
    const controller = new AbortController();
    const current = { utterance: partial.utteranceIndex, endMs: partial.endMs, controller };
    interim = current;
    lastInterimEndMs = partial.endMs;
    const known = detected?.utterance === partial.utteranceIndex ? detected.language : undefined;
    recognize(
      partial.audio.slice(),
      INTERIM_PRIORITY,
      AbortSignal.any([work, controller.signal]),
      settings.language ?? known,
    )
      .then((recognition) => {
        if (settings.language === undefined && recognition.language !== '') {
          detected = { utterance: partial.utteranceIndex, language: recognition.language };
        }
        if (
          controller.signal.aborted ||
          finalisedUtterance >= partial.utteranceIndex ||
          recognition.text === ''
        )
          return;
        out.push({ event: { case: 'result', value: toResult(recognition, partial, false, settings) } });
      })
      .catch(() => {
        // An interim that fails or is overtaken by its final is simply not sent.
      })
      .finally(() => {
        if (interim === current) interim = undefined;
      });
  };

  const maybeInterim = () => {
    if (!settings.interimResults || interim !== undefined) return;
    const partial = segmenter.snapshot();
    if (
      !partial ||
      partial.utteranceIndex === speculative.utteranceIndex ||
      partial.endMs - Math.max(lastInterimEndMs, partial.startMs) < settings.interimIntervalMs
    )
      return;
    // Skipped, not consumed: the interim is tried again at the next progress event.
    if (deps.hasSpareCapacity?.() === false) return;
    startInterim(partial);
  };

  /** A speculation seen in the current VAD batch, not started yet. */
  let speculation: SpeculationEvent | undefined;
  // Speculative work pays off only on spare capacity: under load it would delay other finals.
  const startSpeculation = (event: SpeculationEvent) => {
    if (deps.hasSpareCapacity?.() === false) return;
    if (interim?.utterance === event.utteranceIndex) interim.controller.abort();
    speculative.start(event);
  };

  const run = async () => {
    /** A truncated stream's refusal, raised once the speech decoded before it is finished. */
    let badEnd: { error: unknown } | undefined;
    const input = toRecognitionAudio(
      audio,
      settings.format,
      deps.limits,
      (samples, rate) => {
        inputSamples = samples;
        inputRate = rate;
      },
      (error) => {
        badEnd = { error };
      },
    );
    const events = detectSpeech(input, vadSession, segmenter, work, {
      originSample,
      restart: {
        at: (frameSample) => commits.restartAt(frameSample, segmenter.quietSince),
        open: () => deps.vad.openSession(),
      },
      flushAtEnd: () => hooks.leaveUnfinished?.() !== true,
    });
    for await (const event of events) {
      switch (event.type) {
        case 'speech-started':
          lastInterimEndMs = event.offsetMs;
          out.push({
            event: {
              case: 'speechStarted',
              value: { utteranceIndex: event.utteranceIndex, offsetMs: ms(event.offsetMs) },
            },
          });
          break;
        case 'speech-ended':
          out.push({
            event: {
              case: 'speechEnded',
              value: { utteranceIndex: event.utteranceIndex, offsetMs: ms(event.offsetMs) },
            },
          });
          break;
        case 'speculation':
          // Started at the end of this VAD batch, so that a speculation the same batch cancels
          // (audio sent faster than real time) costs nothing.
          speculation = event;
          break;
        case 'speculation-cancelled':
          speculation = undefined;
          speculative.cancel();
          break;
        case 'utterance': {
          speculation = undefined;
          finalisedUtterance = event.utteranceIndex;
          if (interim?.utterance === event.utteranceIndex) interim.controller.abort();
          const recognition = speculative.claim(event) ?? recognizeFinal(event.audio);
          recognition.catch(() => {});
          finals = finals
            .then(async () => {
              const result = await recognition;
              out.push({ event: { case: 'result', value: toResult(result, event, true, settings) } });
              commit(commits.finalSent(event.utteranceIndex));
            })
            .catch((error: unknown) => {
              out.fail(error);
              stop.abort(error);
            });
          break;
        }
        case 'progress':
          if (speculation !== undefined) startSpeculation(speculation);
          speculation = undefined;
          deps.onAudio?.((event.offsetMs - analysedMs) / 1000);
          analysedMs = event.offsetMs;
          hooks.onProgress?.(event.offsetMs - origin.offsetMs);
          commit(commits.analysed(event.offsetSamples, segmenter.quietSince, segmenter.nextUtteranceIndex));
          maybeInterim();
          break;
      }
    }
    if (badEnd !== undefined) throw badEnd.error;
  };

  run()
    .then(
      () => finals,
      async (error: unknown) => {
        // Results already computed are delivered before the error ends the call.
        await finals.catch(() => {});
        throw error;
      },
    )
    .then(
      () => {
        // Every final is out: the whole processed audio is committed (also before a drain's error),
        // unless the stream is left for another to continue from its last point.
        if (hooks.leaveUnfinished?.() !== true)
          commit(commits.end(inputSamples, segmenter.nextUtteranceIndex));
        out.close();
      },
      (error: unknown) => out.fail(error),
    )
    .finally(() => {
      interim?.controller.abort();
      speculative.cancel();
      vadSession.close();
    });

  return responsesOf(out, signal);
}

function toResult(
  recognition: Recognition,
  span: { utteranceIndex: number; startMs: number; endMs: number },
  isFinal: boolean,
  settings: TranscriptionSettings,
): ResultInit {
  const shift = (items: readonly TimedSpan[]) =>
    items.map((item) => ({
      text: item.text,
      startMs: ms(span.startMs + item.startMs),
      endMs: ms(span.startMs + item.endMs),
    }));
  return {
    text: recognition.text,
    isFinal,
    utteranceIndex: span.utteranceIndex,
    startMs: ms(span.startMs),
    endMs: ms(span.endMs),
    language: recognition.language,
    model: recognition.model,
    segments: isFinal && settings.timestamps !== 'none' ? shift(recognition.segments) : [],
    words: isFinal && settings.timestamps === 'word' ? shift(recognition.words) : [],
  };
}

function ms(value: number): number {
  return Math.max(0, Math.round(value));
}
