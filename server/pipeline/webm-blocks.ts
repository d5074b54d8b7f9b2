import { invalidAudio } from '../errors.js';
import { createByteQueue } from './byte-queue.js';
import { describeBytes } from './ogg-pages.js';
import {
  blockTrack,
  ID,
  isBlock,
  LEAVES,
  MASTERS,
  nameOf,
  readVint,
  SEGMENT_CHILDREN,
  signed,
  text,
  unsigned,
} from './webm-elements.js';

/**
 * A WebM (Matroska) walker for the Opus track of a stream fed in chunks split anywhere. It reads
 * only what it needs — the EBML DocType, Tracks (CodecID, CodecPrivate) and the Clusters' blocks —
 * and skips everything else without buffering it. Segments and Clusters may have unknown sizes, as
 * Chromium's MediaRecorder writes them: an unknown-size Cluster ends where a Segment-level element
 * begins. Errors are INVALID_AUDIO naming the byte offset.
 */
export interface WebmDemuxer {
  /** Reads a chunk; returns what it completed, in stream order. */
  push(chunk: Uint8Array): WebmItem[];
  /** Ends the stream: throws if it stopped inside an element of known size. */
  end(): void;
}

export type WebmItem =
  /** The Opus track's CodecPrivate: its OpusHead. */
  | { readonly type: 'head'; readonly data: Uint8Array; readonly at: number }
  /** One Opus packet of that track; `discardNs` from its BlockGroup's DiscardPadding. */
  | { readonly type: 'packet'; readonly data: Uint8Array; readonly at: number; readonly discardNs: number };

/** Longest leaf read whole; an Opus block is a few KB, a CodecPrivate 19 bytes. */
const MAX_LEAF_BYTES = 1 << 20;
const AUDIO = 2;
/** A block's longest header: an 8-byte track number, timecode and flags. */
const BLOCK_HEADER_BYTES = 11;

interface Open {
  readonly id: number;
  readonly at: number;
  /** Stream offset one past its end; Infinity for an unknown size. */
  readonly end: number;
}

interface Track {
  number?: number;
  type?: number;
  codec?: string;
  head?: Uint8Array;
}

export function createWebmDemuxer(): WebmDemuxer {
  const queue = createByteQueue();
  const open: Open[] = [];
  /** The leaf whose header is read and whose payload is awaited. */
  let leaf: { id: number; at: number; size: number } | undefined;
  let skipping = 0;
  /** The element being skipped or read: for the message when the stream ends inside it. */
  let current: Open | undefined;
  let ended = false;
  let seenHeader = false;
  let segmentSeen = false;
  let track: Track = {};
  const codecs: string[] = [];
  let opusTrack: number | undefined;
  /** A BlockGroup's Block, held until the group ends (its DiscardPadding may follow it). */
  let held: { data: Uint8Array; at: number; discardNs: number } | undefined;

  function close(element: Open, out: WebmItem[]): void {
    if (element.id === ID.trackEntry) {
      codecs.push(track.codec ?? '(no CodecID)');
      if (track.type === AUDIO && track.codec === 'A_OPUS') {
        if (opusTrack !== undefined) {
          throw invalidAudio(`a second Opus track at byte ${element.at}; send one audio track`, element.at);
        }
        if (track.number === undefined || track.head === undefined) {
          throw invalidAudio(
            `the Opus track at byte ${element.at} has no TrackNumber or no CodecPrivate (OpusHead)`,
            element.at,
          );
        }
        opusTrack = track.number;
        out.push({ type: 'head', data: track.head, at: element.at });
      }
      track = {};
    } else if (element.id === ID.tracks && opusTrack === undefined) {
      throw invalidAudio(
        `WebM without an Opus audio track (tracks: ${codecs.join(', ') || 'none'})`,
        element.at,
      );
    } else if (element.id === ID.blockGroup && held !== undefined) {
      out.push({ type: 'packet', ...held });
      held = undefined;
    }
  }

  function readLeaf(id: number, at: number, data: Uint8Array, out: WebmItem[]): void {
    switch (id) {
      case ID.docType: {
        const docType = text(data);
        if (docType !== 'webm' && docType !== 'matroska') {
          throw invalidAudio(`the EBML DocType is ${JSON.stringify(docType)}, expected "webm"`, at);
        }
        return;
      }
      case ID.trackNumber:
        track.number = unsigned(data);
        return;
      case ID.trackType:
        track.type = unsigned(data);
        return;
      case ID.codecId:
        track.codec = text(data);
        return;
      case ID.codecPrivate:
        track.head = data.slice();
        return;
      case ID.discardPadding:
        if (held !== undefined) held.discardNs = signed(data);
        return;
      default: {
        // SimpleBlock or Block: track number, 16-bit timecode, flags, frame.
        const number = blockTrack(data, at);
        if (number.value !== opusTrack) return;
        if (data.length > MAX_LEAF_BYTES) {
          throw invalidAudio(
            `the Opus block at byte ${at} is ${data.length} bytes, more than ${MAX_LEAF_BYTES}`,
            at,
          );
        }
        const flags = data[number.length + 2] ?? 0;
        if ((flags & 0x06) !== 0)
          throw invalidAudio(`a laced block at byte ${at}; one Opus packet per block is accepted`, at);
        const packet = { data: data.slice(number.length + 3), at, discardNs: 0 };
        if (id === ID.block) held = packet;
        else out.push({ type: 'packet', ...packet });
      }
    }
  }

  /** Reads one step; false when more bytes are needed. */
  function step(out: WebmItem[]): boolean {
    const top = open.at(-1);
    if (top !== undefined && queue.offset >= top.end) {
      open.pop();
      close(top, out);
      return true;
    }
    if (skipping > 0) {
      const count = Math.min(skipping, queue.length);
      queue.consume(count);
      skipping -= count;
      return count > 0;
    }
    if (leaf !== undefined) {
      const peek = Math.min(leaf.size, BLOCK_HEADER_BYTES);
      if (isBlock(leaf.id) && queue.length >= peek) {
        // Another track's blocks (a video frame, say) are skipped, not read whole.
        const number = blockTrack(queue.view(0, peek), leaf.at);
        if (number.value !== opusTrack) {
          skipping = leaf.size;
          leaf = undefined;
          return true;
        }
      }
      if (queue.length < leaf.size) return false;
      const { id, at, size } = leaf;
      leaf = undefined;
      readLeaf(id, at, queue.view(0, size), out);
      queue.consume(size);
      return true;
    }
    const at = queue.offset;
    // The start is judged on four bytes, so that the message does not depend on how they were split.
    if (!seenHeader && queue.length < 4) return false;
    const id = readVint(queue, 0, true, at);
    if (id === undefined) return false;
    const size = readVint(queue, id.length, false, at);
    if (size === undefined) return false;
    if (!seenHeader && id.value !== ID.ebml) {
      throw invalidAudio(
        `not a WebM stream, which config.audio_format.encoding WEBM_OPUS declares: it starts with ${describeBytes(queue.view(0, Math.min(4, queue.length)))}, expected an EBML header (1A 45 DF A3)`,
        0,
      );
    }
    seenHeader = true;
    const name = nameOf(id.value);
    if (top?.end === Number.POSITIVE_INFINITY && top.id === ID.cluster && SEGMENT_CHILDREN.has(id.value)) {
      open.pop();
      close(top, out);
    }
    const parent = open.at(-1);
    if (id.value === ID.ebml || id.value === ID.segment) {
      if (parent !== undefined || (id.value === ID.ebml ? at !== 0 : segmentSeen)) {
        throw invalidAudio(
          `a second ${name} at byte ${at}; one WebM stream is accepted, not chained ones`,
          at,
        );
      }
      segmentSeen ||= id.value === ID.segment;
    }
    const body = at + id.length + size.length;
    if (size.unknown) {
      if (id.value !== ID.segment && id.value !== ID.cluster) {
        throw invalidAudio(
          `the ${name} element at byte ${at} has an unknown size; only Segment and Cluster may`,
          at,
        );
      }
    } else if (parent !== undefined && body + size.value > parent.end) {
      throw invalidAudio(
        `the ${name} element at byte ${at} (${size.value} bytes) runs past the end of its ${nameOf(parent.id)} at byte ${parent.end}`,
        at,
      );
    }
    queue.consume(id.length + size.length);
    const length = size.value;
    if (MASTERS.has(id.value)) {
      if (id.value === ID.cluster && opusTrack === undefined) {
        throw invalidAudio(`a Cluster at byte ${at} before the Tracks naming an Opus track`, at);
      }
      open.push({ id: id.value, at, end: body + length });
    } else if (LEAVES.has(id.value)) {
      if (length > MAX_LEAF_BYTES && !isBlock(id.value))
        throw invalidAudio(
          `the ${name} element at byte ${at} is ${length} bytes, more than ${MAX_LEAF_BYTES}`,
          at,
        );
      leaf = { id: id.value, at, size: length };
      current = { id: id.value, at, end: body + length };
    } else {
      skipping = length;
      current = { id: id.value, at, end: body + length };
    }
    return true;
  }

  return {
    push(chunk) {
      if (ended) throw new Error('push() after end()');
      queue.append(chunk);
      const out: WebmItem[] = [];
      while (step(out)) {}
      return out;
    },
    end() {
      if (ended) return;
      ended = true;
      const streamEnd = queue.offset + queue.length;
      const inside =
        leaf !== undefined || skipping > 0
          ? current
          : open.findLast((element) => element.end !== Number.POSITIVE_INFINITY);
      if (inside !== undefined) {
        throw invalidAudio(
          `the stream ended at byte ${streamEnd}, inside the ${nameOf(inside.id)} element that starts at byte ${inside.at}: its last ${inside.end - streamEnd} bytes are missing`,
          streamEnd,
        );
      }
      if (queue.length > 0) {
        throw invalidAudio(
          `the stream ended inside an element header: ${queue.length} bytes left at byte ${queue.offset}`,
          queue.offset,
        );
      }
      if (!seenHeader) return;
      if (opusTrack === undefined)
        throw invalidAudio(
          `WebM without an Opus audio track (tracks: ${codecs.join(', ') || 'none'})`,
          queue.offset,
        );
    },
  };
}
