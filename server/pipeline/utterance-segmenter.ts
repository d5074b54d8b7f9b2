import { invalidArgument, Reason, VoiceError } from '../errors.js';
import { createSampleQueue, quietestCut } from './sample-queue.js';

/**
 * Turns per-frame speech probabilities into utterances. A pure, synchronous state machine: the
 * caller runs the VAD and pushes each frame with its probability.
 *
 * Speech starts at a frame whose probability reaches `threshold`; while speaking, a frame counts as
 * speech down to `negThreshold` (hysteresis). `speech-started` is emitted only once `minSpeechMs` of
 * speech is confirmed, so a shorter burst (a click, a cough) produces no event at all. An utterance
 * ends after `minSilenceMs` without speech. All offsets include padding: `speech-started` carries the
 * utterance's padded start, `speech-ended` its padded end, equal to the `utterance` event's
 * `startMs` / `endMs`. Every sample of the stream ends up in exactly one utterance or is discarded
 * as silence; silence is never held beyond the pad buffer.
 *
 * With `speculate` on, the utterance is offered early, for speculative recognition: once the silence
 * after confirmed speech has covered the trailing padding (at once when the padding is 0) and
 * before `minSilenceMs` confirms the end, a `speculation` event carries exactly the audio (and
 * offsets) the `utterance` event will carry if the silence holds. It fires at most once per silence,
 * and only when it comes before the utterance (never when `minSilenceMs` ≤ the padding, never for a
 * max-length cut in speech). Each speculation is settled by exactly one later event: the
 * `utterance` of the same index with the same `startMs` / `endMs` and samples (whatever its reason:
 * the silence, the length limit reached in it, or the end of the stream), or `speculation-cancelled`
 * (speech resumed, or a length cut ended the utterance elsewhere), emitted before anything else that
 * concerns the utterance.
 */

/** Samples per millisecond at 16 kHz. */
const SAMPLES_PER_MS = 16;
/** How far back from the length limit a cut point is sought. */
const CUT_SEARCH_MS = 3000;

export interface SegmenterConfig {
  /** Probability at which speech starts, 0.1 to 0.95. */
  readonly threshold: number;
  /** Probability below which a frame is silence once speaking; default threshold − 0.15. */
  readonly negThreshold: number;
  /** Speech needed before an utterance starts, 0 to 5000 ms. */
  readonly minSpeechMs: number;
  /** Silence that ends an utterance, 100 to 5000 ms. */
  readonly minSilenceMs: number;
  /** Audio kept before and after the speech, 0 to 1000 ms. */
  readonly speechPadMs: number;
  /** Longest utterance, padding included (the recognizer's window), at least 1000 ms. */
  readonly maxUtteranceMs: number;
}

export const defaultSegmenterConfig: SegmenterConfig = Object.freeze({
  threshold: 0.5,
  negThreshold: 0.35,
  minSpeechMs: 250,
  minSilenceMs: 500,
  speechPadMs: 200,
  maxUtteranceMs: 30_000,
});

export interface SpeechStartedEvent {
  readonly type: 'speech-started';
  readonly utteranceIndex: number;
  readonly offsetMs: number;
}

export interface SpeechEndedEvent {
  readonly type: 'speech-ended';
  readonly utteranceIndex: number;
  readonly offsetMs: number;
}

export type UtteranceEndReason = 'silence' | 'max-length' | 'end-of-stream';

export interface UtteranceEvent {
  readonly type: 'utterance';
  readonly utteranceIndex: number;
  /** 16 kHz samples from startMs to endMs. */
  readonly audio: Float32Array;
  readonly startMs: number;
  readonly endMs: number;
  readonly final: true;
  readonly reason: UtteranceEndReason;
}

export interface PartialUtteranceEvent {
  readonly type: 'partial';
  readonly utteranceIndex: number;
  /** The utterance so far: from its start to the end of the latest speech plus padding. */
  readonly audio: Float32Array;
  readonly startMs: number;
  readonly endMs: number;
}

/** The utterance as it will be if the silence holds; see the module comment. */
export interface SpeculationEvent {
  readonly type: 'speculation';
  readonly utteranceIndex: number;
  /** 16 kHz samples from startMs to endMs, the same as the confirming `utterance` event's. */
  readonly audio: Float32Array;
  readonly startMs: number;
  readonly endMs: number;
}

/** The utterance's speculation will not be confirmed: drop whatever was started for it. */
export interface SpeculationCancelledEvent {
  readonly type: 'speculation-cancelled';
  readonly utteranceIndex: number;
}

export type SegmenterEvent =
  | SpeechStartedEvent
  | SpeechEndedEvent
  | SpeculationEvent
  | SpeculationCancelledEvent
  | UtteranceEvent;

export interface SegmenterOptions {
  /** Emit `speculation` events (and their cancellations); off by default. */
  readonly speculate?: boolean;
  /** Stream sample (16 kHz) of the first frame pushed: a resumed stream's place on its timeline (0). */
  readonly originSample?: number;
  /** Index of the first utterance (0); a resumed stream continues the numbering. */
  readonly firstUtteranceIndex?: number;
}

export interface UtteranceSegmenter {
  /** Feeds the next frame of 16 kHz audio and the VAD's speech probability for it. */
  push(frame: Float32Array, probability: number): SegmenterEvent[];
  /** The utterance in progress, for interim recognition; undefined when nobody is speaking. */
  snapshot(): PartialUtteranceEvent | undefined;
  /** Ends the stream: flushes the utterance in progress (reason end-of-stream). */
  end(): SegmenterEvent[];
  /** Samples dropped as silence so far. */
  readonly discardedSamples: number;
  /**
   * Stream sample since which every frame was silence with no utterance in progress or pending
   * (from the origin, or the end of the frame at which the last one ended or was dismissed);
   * undefined while speech is pending or in progress.
   */
  readonly quietSince: number | undefined;
  /** The index the next utterance will get. */
  readonly nextUtteranceIndex: number;
}

/** Fills in defaults and checks ranges; messages name the EndpointingConfig field. */
export function resolveSegmenterConfig(partial: Partial<SegmenterConfig> = {}): SegmenterConfig {
  const threshold = partial.threshold ?? defaultSegmenterConfig.threshold;
  checkRange('endpointing.speech_threshold', threshold, 0.1, 0.95);
  const negThreshold = partial.negThreshold ?? Math.max(0.01, threshold - 0.15);
  checkRange('negThreshold', negThreshold, 0.01, threshold);
  const config: SegmenterConfig = {
    threshold,
    negThreshold,
    minSpeechMs: partial.minSpeechMs ?? defaultSegmenterConfig.minSpeechMs,
    minSilenceMs: partial.minSilenceMs ?? defaultSegmenterConfig.minSilenceMs,
    speechPadMs: partial.speechPadMs ?? defaultSegmenterConfig.speechPadMs,
    maxUtteranceMs: partial.maxUtteranceMs ?? defaultSegmenterConfig.maxUtteranceMs,
  };
  checkRange('endpointing.min_speech_duration_ms', config.minSpeechMs, 0, 5000);
  checkRange('endpointing.min_silence_duration_ms', config.minSilenceMs, 100, 5000);
  checkRange('endpointing.speech_pad_ms', config.speechPadMs, 0, 1000);
  // The cut search looks back at most half the limit; beyond twice the pad it always finds speech.
  checkRange('maxUtteranceMs', config.maxUtteranceMs, Math.max(1000, 2 * config.speechPadMs + 1), 3_600_000);
  return Object.freeze(config);
}

function checkRange(field: string, value: number, min: number, max: number): void {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw invalidArgument(field, `must be between ${min} and ${max}, got ${value}`);
  }
}

type Phase = 'idle' | 'pending' | 'speaking' | 'ended';

export function createUtteranceSegmenter(
  partial: Partial<SegmenterConfig> = {},
  options: SegmenterOptions = {},
): UtteranceSegmenter {
  const config = resolveSegmenterConfig(partial);
  const speculate = options.speculate ?? false;
  const padSamples = config.speechPadMs * SAMPLES_PER_MS;
  const minSpeechSamples = config.minSpeechMs * SAMPLES_PER_MS;
  const minSilenceSamples = config.minSilenceMs * SAMPLES_PER_MS;
  const maxSamples = config.maxUtteranceMs * SAMPLES_PER_MS;
  // Speech that is not confirmed within this span from its onset is treated as noise.
  const pendingLimitSamples = minSpeechSamples + minSilenceSamples;
  const searchSamples = Math.min(CUT_SEARCH_MS * SAMPLES_PER_MS, Math.floor(maxSamples / 2));

  // Everything received and not yet emitted or discarded, starting at stream sample `held.start`.
  const origin = options.originSample ?? 0;
  const held = createSampleQueue(origin);
  let phase: Phase = 'idle';
  let utteranceIndex = options.firstUtteranceIndex ?? 0;
  let quietSince: number | undefined = origin;
  /** Stream sample just past the last frame that counted as speech. */
  let lastSpeechEnd = origin;
  /** Where the speech waiting for confirmation began, and how much of it there is. */
  let onset = 0;
  let pendingSpeech = 0;
  let discarded = 0;
  /** Stream sample where the utterance in progress ends if the current silence holds, once offered. */
  let speculatedEnd: number | undefined;

  const now = (): number => held.start + held.length;

  function keepOnlyPad(): void {
    discarded += held.dropFront(Math.max(0, held.length - padSamples));
  }

  function cancelSpeculation(events: SegmenterEvent[]): void {
    if (speculatedEnd === undefined) return;
    speculatedEnd = undefined;
    events.push({ type: 'speculation-cancelled', utteranceIndex });
  }

  function emitUtterance(end: number, reason: UtteranceEndReason, events: SegmenterEvent[]): void {
    if (speculatedEnd !== end) cancelSpeculation(events);
    speculatedEnd = undefined;
    const startMs = held.start / SAMPLES_PER_MS;
    const endMs = end / SAMPLES_PER_MS;
    const audio = held.takeFront(end - held.start);
    events.push({ type: 'speech-ended', utteranceIndex, offsetMs: endMs });
    events.push({ type: 'utterance', utteranceIndex, audio, startMs, endMs, final: true, reason });
    utteranceIndex += 1;
  }

  function cutOverLong(events: SegmenterEvent[]): void {
    while (phase === 'speaking' && held.length >= maxSamples) {
      const limit = held.start + maxSamples;
      const cut = quietestCut(held, limit - searchSamples, limit);
      if (lastSpeechEnd > cut) {
        emitUtterance(cut, 'max-length', events);
        events.push({ type: 'speech-started', utteranceIndex, offsetMs: cut / SAMPLES_PER_MS });
      } else {
        // Only silence follows the cut: end where the speech (plus padding) ends instead.
        emitUtterance(Math.min(lastSpeechEnd + padSamples, limit), 'max-length', events);
        phase = 'idle';
        keepOnlyPad();
      }
    }
  }

  function push(frame: Float32Array, probability: number): SegmenterEvent[] {
    const events = step(frame, probability);
    if (phase !== 'idle') quietSince = undefined;
    else quietSince ??= now();
    return events;
  }

  function step(frame: Float32Array, probability: number): SegmenterEvent[] {
    if (phase === 'ended') {
      throw new VoiceError(Reason.OutOfOrder, 'audio: received after the end of the stream');
    }
    if (frame.length === 0) return [];
    const events: SegmenterEvent[] = [];
    const frameStart = now();
    held.push(frame);
    const frameEnd = now();
    const isSpeech = probability >= config.negThreshold;

    if (phase === 'idle') {
      if (probability < config.threshold) {
        keepOnlyPad();
        return events;
      }
      phase = 'pending';
      onset = frameStart;
      pendingSpeech = 0;
    }
    if (phase === 'pending') {
      if (isSpeech) {
        pendingSpeech += frame.length;
        lastSpeechEnd = frameEnd;
      }
      if (pendingSpeech >= minSpeechSamples) {
        phase = 'speaking';
        events.push({ type: 'speech-started', utteranceIndex, offsetMs: held.start / SAMPLES_PER_MS });
      } else if (frameEnd - lastSpeechEnd >= minSilenceSamples || frameEnd - onset >= pendingLimitSamples) {
        // A burst too short to be speech, or speech too sparse to confirm: all of it is silence.
        phase = 'idle';
        keepOnlyPad();
        return events;
      }
    } else if (isSpeech) {
      lastSpeechEnd = frameEnd;
      cancelSpeculation(events);
    }
    cutOverLong(events);
    if (phase === 'speaking' && frameEnd - lastSpeechEnd >= minSilenceSamples) {
      emitUtterance(Math.min(lastSpeechEnd + padSamples, frameEnd), 'silence', events);
      phase = 'idle';
      keepOnlyPad();
    } else if (phase === 'speaking' && !isSpeech) {
      maybeSpeculate(frameEnd, events);
    }
    return events;
  }

  /**
   * Offers the utterance once the silence covers the padding. Until the silence confirms it, its end
   * stays `lastSpeechEnd + pad` (every later frame ends past it) and its start stays put (the held
   * audio is shorter than the length limit), so the samples are those the utterance will carry.
   */
  function maybeSpeculate(frameEnd: number, events: SegmenterEvent[]): void {
    if (!speculate || speculatedEnd !== undefined || frameEnd - lastSpeechEnd < padSamples) return;
    const end = lastSpeechEnd + padSamples;
    speculatedEnd = end;
    events.push({
      type: 'speculation',
      utteranceIndex,
      audio: held.copyFront(end - held.start),
      startMs: held.start / SAMPLES_PER_MS,
      endMs: end / SAMPLES_PER_MS,
    });
  }

  function snapshot(): PartialUtteranceEvent | undefined {
    if (phase !== 'speaking') return undefined;
    const end = Math.min(lastSpeechEnd + padSamples, now());
    return {
      type: 'partial',
      utteranceIndex,
      audio: held.copyFront(end - held.start),
      startMs: held.start / SAMPLES_PER_MS,
      endMs: end / SAMPLES_PER_MS,
    };
  }

  function end(): SegmenterEvent[] {
    const events: SegmenterEvent[] = [];
    if (phase === 'speaking') {
      emitUtterance(Math.min(lastSpeechEnd + padSamples, now()), 'end-of-stream', events);
    }
    discarded += held.dropFront(held.length);
    phase = 'ended';
    return events;
  }

  return {
    push,
    snapshot,
    end,
    get discardedSamples() {
      return discarded;
    },
    get quietSince() {
      return phase === 'idle' ? quietSince : undefined;
    },
    get nextUtteranceIndex() {
      return utteranceIndex;
    },
  };
}
