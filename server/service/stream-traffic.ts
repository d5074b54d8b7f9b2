/**
 * What live streams ask of the inference workers, learned across streams for the capacity estimate
 * (capacity.ts). Time comes from an injected clock.
 * - The speech ratio r: seconds sent to final recognition per second of stream audio (a prior of 1.0
 *   worth 60 s of audio, observations forgotten with a 10-minute half-life, bounded to [0.2, 1.5]).
 * - The utterance length's mean and second moment (EWMA, prior 2 s ± 1 s; lengths past 30 s count as
 *   30 s, the mean is at least 0.25 s).
 * - The mean stream duration (for the retry hint; EWMA, prior 60 s).
 * - The compute rate of other work that shares the workers and cannot be deferred (synthesis), an
 *   exponentially weighted rate over ~30 s, in busy workers.
 */
import type { Moments } from './queueing.js';

/** The longest utterance the estimates count; a longer one counts as this long. */
export const MAX_UTTERANCE_SECONDS = 30;

export interface StreamTraffic {
  /** Seconds of a stream's audio analysed; ignored unless > 0. */
  audio(seconds: number): void;
  /** An utterance, `seconds` long, sent to final recognition; ignored unless > 0. */
  utterance(seconds: number): void;
  /** A stream that lasted `seconds` has ended. */
  streamEnded(seconds: number): void;
  /** Compute seconds of other work on the same workers (synthesis); ignored unless > 0. */
  background(computeSeconds: number): void;
  speechRatio(): number;
  /** The utterance length's mean and second moment, in s and s². */
  utteranceLength(): Moments;
  meanStreamSeconds(): number;
  /** Busy workers taken by the other work now. */
  backgroundLoad(): number;
}

const SPEECH_PRIOR = 1;
const SPEECH_PRIOR_SECONDS = 60;
const SPEECH_HALF_LIFE_MS = 10 * 60_000;
const SPEECH_FLOOR = 0.2;
const SPEECH_CEILING = 1.5;

const UTTERANCE_PRIOR_SECONDS = 2;
const UTTERANCE_PRIOR_SD = 1;
const UTTERANCE_ALPHA = 0.05;
const UTTERANCE_FLOOR_SECONDS = 0.25;

const STREAM_PRIOR_SECONDS = 60;
const STREAM_ALPHA = 0.1;
const BACKGROUND_TAU_MS = 30_000;

/** `now`: milliseconds on a monotonic clock. */
export function createStreamTraffic(now: () => number): StreamTraffic {
  // Speech ratio: forgotten sums of utterance and audio seconds.
  let speechSeconds = 0;
  let audioSeconds = 0;
  let speechAt = now();
  let utteranceMean = UTTERANCE_PRIOR_SECONDS;
  let utteranceSquare = UTTERANCE_PRIOR_SECONDS ** 2 + UTTERANCE_PRIOR_SD ** 2;
  let streamSeconds = STREAM_PRIOR_SECONDS;
  let background = 0;
  let backgroundAt = now();

  function forgetSpeech(): void {
    const t = now();
    const factor = 0.5 ** ((t - speechAt) / SPEECH_HALF_LIFE_MS);
    speechSeconds *= factor;
    audioSeconds *= factor;
    speechAt = t;
  }

  /** An exponentially weighted rate. */
  function backgroundLoad(): number {
    const t = now();
    background *= Math.exp(-(t - backgroundAt) / BACKGROUND_TAU_MS);
    backgroundAt = t;
    return (background * 1000) / BACKGROUND_TAU_MS;
  }

  return {
    audio(seconds) {
      if (!(seconds > 0)) return;
      forgetSpeech();
      audioSeconds += seconds;
    },

    utterance(seconds) {
      if (!(seconds > 0)) return;
      forgetSpeech();
      speechSeconds += seconds;
      const length = Math.min(MAX_UTTERANCE_SECONDS, seconds);
      utteranceMean += UTTERANCE_ALPHA * (length - utteranceMean);
      utteranceSquare += UTTERANCE_ALPHA * (length * length - utteranceSquare);
    },

    streamEnded(seconds) {
      streamSeconds += STREAM_ALPHA * (seconds - streamSeconds);
    },

    background(computeSeconds) {
      if (!(computeSeconds > 0)) return;
      backgroundLoad();
      background += computeSeconds;
    },

    speechRatio() {
      forgetSpeech();
      const ratio =
        (speechSeconds + SPEECH_PRIOR * SPEECH_PRIOR_SECONDS) / (audioSeconds + SPEECH_PRIOR_SECONDS);
      return Math.min(SPEECH_CEILING, Math.max(SPEECH_FLOOR, ratio));
    },

    utteranceLength() {
      const mean = Math.max(UTTERANCE_FLOOR_SECONDS, utteranceMean);
      return { mean, square: Math.max(utteranceSquare, mean * mean) };
    },

    meanStreamSeconds: () => streamSeconds,
    backgroundLoad,
  };
}
