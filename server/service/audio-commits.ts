import { RECOGNITION_RATE } from '../pipeline/audio-input.js';

/**
 * Where a stream's audio is committed: the AudioCommitted points of transcription.proto, and the
 * frames at which the VAD restarts from its initial state. A resumed stream's VAD starts from that
 * state at the resume point; restarting every stream's VAD at the points it may commit is what
 * makes the resumed stream's probabilities, and so its events, those of the uninterrupted stream.
 *
 * A restart point is a frame on the commit grid (whole VAD frames counted from the stream's first
 * sample, and whole input samples) while no utterance is pending or in progress: the first such
 * frame of each quiet spell, then one every COMMIT_INTERVAL_MS while it lasts. It becomes a commit
 * point once the audio analysed is `speech_pad` past it with the spell unbroken (the next
 * utterance's leading padding then lies after it), and is sent once every final before it has been
 * sent, when it advances past a new final or by COMMIT_INTERVAL_MS. At the end of the audio the
 * point is the end of the processed samples, rounded down to a whole millisecond of whole input
 * samples.
 */
export interface AudioCommits {
  /** Whether the VAD restarts at the frame starting at `frameSample`, the segmenter being as it is. */
  restartAt(frameSample: number, quietSince: number | undefined): boolean;
  /**
   * After each analysed batch: the 16 kHz stream sample analysed through, the segmenter's quiet
   * start (undefined while speech is pending or in progress) and its next utterance index. Returns
   * a point to send now, if one is due.
   */
  analysed(
    throughSample: number,
    quietSince: number | undefined,
    nextUtteranceIndex: number,
  ): CommitPoint | undefined;
  /** The final of `utteranceIndex` has been sent; returns a point to send now, if one is due. */
  finalSent(utteranceIndex: number): CommitPoint | undefined;
  /**
   * The audio ended and every final is sent: the point at the end of `inputSamples` input samples,
   * unless it does not advance.
   */
  end(inputSamples: number, nextUtteranceIndex: number): CommitPoint | undefined;
}

export interface CommitPoint {
  readonly offsetMs: number;
  readonly nextUtteranceIndex: number;
}

export interface AudioCommitsOptions {
  /** Where the stream's first sample lies on its timeline, in ms (a whole number of input samples). */
  readonly originMs: number;
  readonly firstUtteranceIndex: number;
  /** The VAD's frame, in 16 kHz samples. */
  readonly frameSamples: number;
  readonly speechPadMs: number;
  /** The client's sample rate; undefined until known (a WAV header not read yet). */
  readonly inputRate: () => number | undefined;
}

/** Commit (and VAD restart) points in continued silence are this far apart. */
export const COMMIT_INTERVAL_MS = 5000;

const SAMPLES_PER_MS = RECOGNITION_RATE / 1000;

export function createAudioCommits(options: AudioCommitsOptions): AudioCommits {
  const origin = options.originMs * SAMPLES_PER_MS;
  const pad = options.speechPadMs * SAMPLES_PER_MS;
  const interval = COMMIT_INTERVAL_MS * SAMPLES_PER_MS;
  const frameMs = options.frameSamples / SAMPLES_PER_MS;
  /** The stream's first sample counts as a restart: the VAD starts there from its initial state. */
  let restarted = origin;
  /** The latest commit point for each next-utterance index, not yet sent. */
  const candidates = new Map<number, number>();
  let sent = { sample: origin, next: options.firstUtteranceIndex };
  let finalsThrough = options.firstUtteranceIndex;

  const due = (): CommitPoint | undefined => {
    let best: { sample: number; next: number } | undefined;
    for (const [next, sample] of candidates) {
      if (next <= finalsThrough && (best === undefined || next > best.next)) best = { sample, next };
    }
    if (best === undefined) return undefined;
    for (const next of candidates.keys()) if (next < best.next) candidates.delete(next);
    const advances =
      best.sample > sent.sample && (best.next > sent.next || best.sample - sent.sample >= interval);
    if (!advances) return undefined;
    sent = best;
    return { offsetMs: best.sample / SAMPLES_PER_MS, nextUtteranceIndex: best.next };
  };

  return {
    restartAt(frame, quietSince) {
      const rate = options.inputRate();
      if (quietSince === undefined || rate === undefined || frame <= origin) return false;
      if ((frame - origin) % (gridMs(rate, frameMs) * SAMPLES_PER_MS) !== 0) return false;
      // Once per quiet spell, then once an interval while it lasts.
      if (restarted >= quietSince && frame - restarted < interval) return false;
      restarted = frame;
      return true;
    },
    analysed(through, quietSince, next) {
      if (quietSince === undefined || restarted < quietSince || through - restarted < pad) return undefined;
      candidates.set(next, restarted);
      return due();
    },
    finalSent(utteranceIndex) {
      finalsThrough = Math.max(finalsThrough, utteranceIndex + 1);
      return due();
    },
    end(inputSamples, next) {
      const rate = options.inputRate();
      if (rate === undefined) return undefined;
      const stepMs = 1000 / gcd(rate, 1000);
      const stepSamples = rate / gcd(rate, 1000);
      const sample = origin + Math.floor(inputSamples / stepSamples) * stepMs * SAMPLES_PER_MS;
      if (sample < sent.sample || (sample === sent.sample && next <= sent.next)) return undefined;
      sent = { sample, next };
      return { offsetMs: sample / SAMPLES_PER_MS, nextUtteranceIndex: next };
    },
  };
}

/** The grid of points that are whole VAD frames and whole input samples at `rate`, in ms. */
export function gridMs(rate: number, frameMs: number): number {
  const sampleMs = 1000 / gcd(rate, 1000);
  return (frameMs * sampleMs) / gcd(frameMs, sampleMs);
}

/** Whether `offsetMs` is a whole number of samples at `rate`. */
export function isWholeSamples(offsetMs: number, rate: number): boolean {
  return (offsetMs * rate) % 1000 === 0;
}

function gcd(a: number, b: number): number {
  let x = Math.abs(a);
  let y = Math.abs(b);
  while (y !== 0) [x, y] = [y, x % y];
  return x;
}
