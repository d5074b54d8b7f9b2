/**
 * The segmenter's audio buffer: 16 kHz samples held by stream position, and the search for the
 * quietest point at which to cut an over-long utterance.
 */

/** Samples per millisecond at 16 kHz. */
const SAMPLES_PER_MS = 16;
/** Window over which the quietest cut point of an over-long utterance is sought. */
const CUT_WINDOW_SAMPLES = 100 * SAMPLES_PER_MS;
/** Candidate cut points lie on this grid of the stream's timeline (10 ms). */
const CUT_HOP_SAMPLES = 10 * SAMPLES_PER_MS;

/**
 * The cut point in [from, to] (stream samples, on a 10 ms grid) whose surrounding 100 ms window has
 * the lowest energy; ties go to the latest, keeping the first part as long as allowed.
 */
export function quietestCut(queue: SampleQueue, from: number, to: number): number {
  const half = CUT_WINDOW_SAMPLES / 2;
  const first = Math.max(queue.start, from - half);
  const last = Math.min(queue.start + queue.length, to + half);
  const samples = queue.copyRange(first, last);
  const energy = new Float64Array(samples.length + 1);
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i] ?? 0;
    energy[i + 1] = (energy[i] ?? 0) + s * s;
  }
  let best = to;
  let bestEnergy = Number.POSITIVE_INFINITY;
  for (let cut = Math.ceil(from / CUT_HOP_SAMPLES) * CUT_HOP_SAMPLES; cut <= to; cut += CUT_HOP_SAMPLES) {
    const a = Math.max(first, cut - half) - first;
    const b = Math.min(last, cut + half) - first;
    const mean = ((energy[b] ?? 0) - (energy[a] ?? 0)) / Math.max(1, b - a);
    if (mean <= bestEnergy) {
      bestEnergy = mean;
      best = cut;
    }
  }
  return best;
}

export interface SampleQueue {
  /** Stream sample index of the first held sample. */
  readonly start: number;
  readonly length: number;
  push(chunk: Float32Array): void;
  /** Drops up to n samples from the front; returns how many were dropped. */
  dropFront(n: number): number;
  takeFront(n: number): Float32Array;
  copyFront(n: number): Float32Array;
  /** Copies stream samples [from, to). */
  copyRange(from: number, to: number): Float32Array;
}

/**
 * Chunks of audio with a moving start, so frames are copied once, when an utterance is emitted.
 * `start` is the stream sample of the first sample pushed.
 */
export function createSampleQueue(start0 = 0): SampleQueue {
  let chunks: Float32Array[] = [];
  let start = start0;
  let length = 0;

  function copyRange(from: number, to: number): Float32Array {
    const out = new Float32Array(Math.max(0, to - from));
    let chunkStart = start;
    for (const chunk of chunks) {
      const chunkEnd = chunkStart + chunk.length;
      if (chunkEnd > from && chunkStart < to) {
        const a = Math.max(from, chunkStart);
        const b = Math.min(to, chunkEnd);
        out.set(chunk.subarray(a - chunkStart, b - chunkStart), a - from);
      }
      if (chunkEnd >= to) break;
      chunkStart = chunkEnd;
    }
    return out;
  }

  function dropFront(n: number): number {
    let left = Math.min(n, length);
    const dropped = left;
    let i = 0;
    while (left > 0) {
      const chunk = chunks[i] as Float32Array;
      if (chunk.length <= left) {
        left -= chunk.length;
        i += 1;
      } else {
        chunks[i] = chunk.subarray(left);
        left = 0;
      }
    }
    chunks = chunks.slice(i);
    start += dropped;
    length -= dropped;
    return dropped;
  }

  return {
    get start() {
      return start;
    },
    get length() {
      return length;
    },
    push(chunk) {
      // Copied: callers commonly reuse their frame buffer.
      chunks.push(chunk.slice());
      length += chunk.length;
    },
    dropFront,
    takeFront(n) {
      const out = copyRange(start, start + Math.min(n, length));
      dropFront(out.length);
      return out;
    },
    copyFront(n) {
      return copyRange(start, start + Math.min(n, length));
    },
    copyRange,
  };
}
