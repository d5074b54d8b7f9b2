import type { VadSession } from '../engines/types.js';
import type { SegmenterEvent, UtteranceSegmenter } from './utterance-segmenter.js';

/** After each batch: how far the stream's audio has been analysed, in milliseconds. */
export interface ProgressEvent {
  readonly type: 'progress';
  readonly offsetMs: number;
  /** The same point in 16 kHz stream samples. */
  readonly offsetSamples: number;
}

export type DetectorEvent = SegmenterEvent | ProgressEvent;

/** Frames sent to the VAD in one call at least (64 ms), so a stream costs few worker messages. */
const MIN_BATCH_FRAMES = 2;
/**
 * Frames in one call at most (1 s): a large client chunk is split so that it never holds the shared
 * VAD worker long enough to stall other streams.
 */
const MAX_BATCH_FRAMES = 32;

/**
 * Runs 16 kHz audio through the VAD in batches of at most 32 whole frames and the segmenter frame by frame,
 * yielding speech events, speculations (when the segmenter makes them), finished utterances and progress
 * as they happen. Audio the VAD calls silence goes no further than the segmenter's padding buffer.
 */
export interface DetectSpeechOptions {
  /**
   * The stream sample of the first frame (a resumed stream's place on its timeline; 0): frames are
   * laid from it. The segmenter must have been created with the same origin.
   */
  readonly originSample?: number;
  /**
   * Restarts the VAD from its initial state at chosen frames: before each frame `at` is asked with
   * the frame's first stream sample; when it answers true, a session from `open` takes over from
   * that frame on (the ones it opens are closed here; the first stays the caller's).
   */
  readonly restart?: {
    at(frameSample: number): boolean;
    open(): VadSession;
  };
  /**
   * Asked when the audio ends: false leaves the utterance in progress (and the last partial frame)
   * unfinished instead of flushing it, for a stream that another will continue. Absent: flush.
   */
  readonly flushAtEnd?: () => boolean;
}

export async function* detectSpeech(
  audio: AsyncIterable<Float32Array>,
  firstVad: VadSession,
  segmenter: UtteranceSegmenter,
  signal: AbortSignal,
  options: DetectSpeechOptions = {},
): AsyncGenerator<DetectorEvent> {
  const frame = firstVad.frameSamples;
  let vad = firstVad;
  let pending = new Float32Array(0);
  let lastProbability = 0;
  let analysedSamples = options.originSample ?? 0;
  const restart = options.restart;

  const process = async function* (samples: Float32Array): AsyncGenerator<DetectorEvent> {
    const frames = Math.floor(samples.length / frame);
    for (let first = 0; first < frames; first += MAX_BATCH_FRAMES) {
      const count = Math.min(MAX_BATCH_FRAMES, frames - first);
      const batch = samples.subarray(first * frame, (first + count) * frame);
      // The engine may take the batch's buffer (it crosses to a worker), so it gets its own copy.
      let probabilities = await vad.probabilities(batch.slice(), { signal });
      /** The frame of the batch that `probabilities` starts at. */
      let base = 0;
      for (let index = 0; index < count; index += 1) {
        if (restart?.at(analysedSamples + index * frame)) {
          if (vad !== firstVad) vad.close();
          vad = restart.open();
          base = index;
          probabilities = await vad.probabilities(batch.slice(index * frame), { signal });
        }
        lastProbability = probabilities[index - base] ?? 0;
        yield* segmenter.push(batch.subarray(index * frame, (index + 1) * frame), lastProbability);
      }
      analysedSamples += count * frame;
      yield { type: 'progress', offsetMs: analysedSamples / 16, offsetSamples: analysedSamples };
    }
  };

  try {
    for await (const chunk of audio) {
      const joined = new Float32Array(pending.length + chunk.length);
      joined.set(pending);
      joined.set(chunk, pending.length);
      const usable = Math.floor(joined.length / frame) * frame;
      if (usable < MIN_BATCH_FRAMES * frame) {
        pending = joined;
        continue;
      }
      yield* process(joined.subarray(0, usable));
      pending = joined.slice(usable);
    }
    const whole = Math.floor(pending.length / frame) * frame;
    if (whole > 0) yield* process(pending.subarray(0, whole));
    if (options.flushAtEnd?.() === false) return;
    // The last partial frame is too short for the VAD; it continues the last decision.
    const tail = pending.subarray(whole);
    if (tail.length > 0) yield* segmenter.push(tail, lastProbability);
    yield* segmenter.end();
  } finally {
    if (vad !== firstVad) vad.close();
  }
}
