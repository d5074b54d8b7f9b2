import { Code, ConnectError } from '@connectrpc/connect';

/**
 * The audio a resumable stream has sent and the server has not committed yet, from the last
 * AudioCommitted point on, in the order sent. Chunks are numbered, so that each stream attempt
 * replays what it has not sent yet and every chunk taken from the caller is kept exactly once,
 * whichever attempt took it. Bounded: more than `maxHeldMs` of audio held is an error.
 */
export interface HeldAudio {
  /** Keeps a chunk the caller gave; throws RESOURCE_EXHAUSTED past the bound. */
  push(audio: Uint8Array): void;
  /** The server committed everything before `offsetMs` on the timeline: drops it. */
  commit(offsetMs: number): void;
  /** Number of the first chunk held; a new attempt replays from here. */
  readonly first: number;
  /** The chunk numbered `sequence`, if held. */
  at(sequence: number): Uint8Array | undefined;
  /** Number the next pushed chunk gets. */
  readonly next: number;
}

export interface HeldAudioOptions {
  /** Bytes per sample frame (all channels). */
  readonly frameBytes: number;
  readonly sampleRate: number;
  /** Where the first pushed byte lies on the timeline, in ms (a whole number of samples). */
  readonly originMs: number;
  readonly maxHeldMs: number;
}

export function createHeldAudio(options: HeldAudioOptions): HeldAudio {
  const bytesPerSecond = options.frameBytes * options.sampleRate;
  const maxBytes = Math.floor((options.maxHeldMs / 1000) * bytesPerSecond);
  const chunks: Uint8Array[] = [];
  let first = 0;
  let bytes = 0;
  /** Timeline position of the first held byte, in bytes from the timeline's 0. */
  let start = timelineBytes(options.originMs);

  function timelineBytes(ms: number): number {
    return Math.round((ms * options.sampleRate) / 1000) * options.frameBytes;
  }

  return {
    push(audio) {
      if (bytes + audio.length > maxBytes) {
        throw new ConnectError(
          `resume: the server has not committed the last ${Math.round(((bytes + audio.length) / bytesPerSecond) * 1000)} ms of audio, more than maxHeldAudioMs (${options.maxHeldMs}) allows; raise it or send less audio ahead of the server`,
          Code.ResourceExhausted,
        );
      }
      chunks.push(audio);
      bytes += audio.length;
    },
    commit(offsetMs) {
      let drop = Math.min(bytes, timelineBytes(offsetMs) - start);
      if (drop <= 0) return;
      start += drop;
      bytes -= drop;
      while (drop > 0) {
        const head = chunks[0] as Uint8Array;
        if (head.length <= drop) {
          chunks.shift();
          first += 1;
          drop -= head.length;
        } else {
          // The rest of a partly committed chunk keeps its number: the attempt that sent it is past it.
          chunks[0] = head.subarray(drop);
          drop = 0;
        }
      }
    },
    get first() {
      return first;
    },
    at(sequence) {
      return chunks[sequence - first];
    },
    get next() {
      return first + chunks.length;
    },
  };
}
