import { invalidAudio } from '../errors.js';
import { createByteQueue } from './byte-queue.js';

/**
 * An Ogg page parser (RFC 3533) for one logical stream, fed chunks split anywhere. It checks every
 * page — capture pattern, version, CRC, serial number, page sequence, continuation flags — and
 * reassembles packets across pages. Errors are INVALID_AUDIO naming the byte offset of the page.
 */
export interface OggDemuxer {
  /** Reads a chunk; returns the packets completed by it. */
  push(chunk: Uint8Array): OggPacket[];
  /** Ends the stream: throws if it stopped inside a page or inside a packet. */
  end(): void;
}

export interface OggPacket {
  readonly data: Uint8Array;
  /** Stream offset of the packet's first byte. */
  readonly offset: number;
  /** For a packet ending on the end-of-stream page: that page's granule position. */
  readonly finalGranule?: number;
}

/** Longest packet reassembled; an Opus packet is at most a few KB, OpusTags rarely more. */
const MAX_PACKET_BYTES = 1 << 20;
const HEADER_BYTES = 27;
const CONTINUED = 0x01;
const FIRST = 0x02;
const LAST = 0x04;

export function createOggDemuxer(): OggDemuxer {
  const queue = createByteQueue();
  let serial: number | undefined;
  let sequence = -1;
  let ended = false;
  let finished = false;
  /** Parts of a packet that continues on the next page. */
  let partial: Uint8Array[] = [];
  let partialBytes = 0;
  /** Stream offset where the open packet began. */
  let partialStart = 0;
  /** Length of the page being read, once its segment table is in. */
  let pageBytes: number | undefined;

  function readPage(out: OggPacket[]): boolean {
    const at = queue.offset;
    // Judged on four bytes, so that the message does not depend on how the bytes were split.
    if (queue.length < 4) return false;
    for (let i = 0; i < 4; i++) {
      if (queue.at(i) !== CAPTURE[i]) {
        const seen = describeBytes(queue.view(0, 4));
        throw at === 0
          ? invalidAudio(
              `not an Ogg stream, which config.audio_format.encoding OGG_OPUS declares: it starts with ${seen}, expected "OggS"`,
              0,
            )
          : invalidAudio(
              `no Ogg page at byte ${at} (${seen}, expected "OggS"): bytes are missing or corrupt`,
              at,
            );
      }
    }
    if (queue.length < HEADER_BYTES) return false;
    const segments = queue.at(26) ?? 0;
    if (queue.length < HEADER_BYTES + segments) return false;
    const lacing = queue.view(HEADER_BYTES, segments);
    // Summed once per page, so that a page arriving byte by byte stays linear.
    pageBytes ??= lacing.reduce((sum, value) => sum + value, HEADER_BYTES + segments);
    if (queue.length < pageBytes) return false;

    const page = queue.view(0, pageBytes);
    const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
    if (page[4] !== 0) throw invalidAudio(`Ogg page at byte ${at} has version ${page[4]}; only 0 exists`, at);
    const flags = page[5] ?? 0;
    if ((flags & ~(CONTINUED | FIRST | LAST)) !== 0) {
      throw invalidAudio(`Ogg page at byte ${at} has unknown header flags 0x${flags.toString(16)}`, at);
    }
    const stored = view.getUint32(22, true);
    if (oggCrc(page) !== stored)
      throw invalidAudio(`Ogg page at byte ${at} fails its CRC check: it is corrupt`, at);
    const pageSerial = view.getUint32(14, true);
    const pageSequence = view.getUint32(18, true);
    if (serial === undefined) {
      if ((flags & FIRST) === 0)
        throw invalidAudio(`the first Ogg page (byte ${at}) is not a beginning-of-stream page`, at);
      serial = pageSerial;
    } else if (pageSerial !== serial || (flags & FIRST) !== 0) {
      throw invalidAudio(
        `a second logical stream (serial ${pageSerial}) at byte ${at}; one Opus stream is accepted, not multiplexed or chained streams`,
        at,
      );
    } else if (pageSequence !== sequence + 1) {
      throw invalidAudio(
        `Ogg page at byte ${at} has sequence number ${pageSequence} after ${sequence}: a page is missing`,
        at,
      );
    }
    sequence = pageSequence;
    const continued = (flags & CONTINUED) !== 0;
    if (partialBytes > 0 && !continued) {
      throw invalidAudio(`Ogg page at byte ${at} does not continue the packet the page before left open`, at);
    }
    if (partialBytes === 0 && continued) {
      throw invalidAudio(`Ogg page at byte ${at} continues a packet that no page began`, at);
    }
    const eos = (flags & LAST) !== 0;
    const granule = Number(view.getBigUint64(6, true));
    const completed: Array<{ data: Uint8Array; offset: number }> = [];
    let position = HEADER_BYTES + segments;
    let segmentStart = position;
    for (const value of lacing) {
      position += value;
      if (value === 255) continue;
      const offset = partialBytes > 0 ? partialStart : at + segmentStart;
      completed.push({ data: join(partial, page.subarray(segmentStart, position), partialBytes), offset });
      partial = [];
      partialBytes = 0;
      segmentStart = position;
    }
    if (segmentStart < position) {
      if (partialBytes === 0) partialStart = at + segmentStart;
      partialBytes += position - segmentStart;
      if (partialBytes > MAX_PACKET_BYTES) {
        throw invalidAudio(`a packet longer than ${MAX_PACKET_BYTES} bytes at byte ${at}`, at);
      }
      partial.push(page.slice(segmentStart, position));
    }
    completed.forEach((packet, index) => {
      const last = eos && index === completed.length - 1;
      out.push(last ? { ...packet, finalGranule: granule } : packet);
    });
    queue.consume(pageBytes);
    pageBytes = undefined;
    if (eos) finished = true;
    return true;
  }

  return {
    push(chunk) {
      if (ended) throw new Error('push() after end()');
      if (chunk.length === 0) return [];
      if (finished) {
        const at = queue.offset + queue.length;
        throw invalidAudio(
          `bytes after the end-of-stream page, at byte ${at}: one Opus stream is accepted`,
          at,
        );
      }
      queue.append(chunk);
      const out: OggPacket[] = [];
      while (!finished && queue.length > 0 && readPage(out)) {}
      if (finished && queue.length > 0) {
        throw invalidAudio(
          `bytes after the end-of-stream page, at byte ${queue.offset}: one Opus stream is accepted`,
          queue.offset,
        );
      }
      return out;
    },
    end() {
      if (ended) return;
      ended = true;
      if (queue.length > 0) {
        throw invalidAudio(
          `the stream ended inside an Ogg page: ${queue.length} bytes left at byte ${queue.offset}`,
          queue.offset,
        );
      }
      if (partialBytes > 0) {
        throw invalidAudio(
          `the stream ended inside a packet that continues past the last page (byte ${queue.offset})`,
          queue.offset,
        );
      }
    },
  };
}

const CAPTURE = [0x4f, 0x67, 0x67, 0x53];

/** Bytes for a message: quoted when printable ASCII ("RIFF"), else in hex (1A 45 DF A3). */
export function describeBytes(bytes: Uint8Array): string {
  if (bytes.every((byte) => byte >= 0x20 && byte < 0x7f))
    return JSON.stringify(String.fromCharCode(...bytes));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0').toUpperCase()).join(' ');
}

/** Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0, the CRC field read as 0. */
export function oggCrc(page: Uint8Array): number {
  let crc = 0;
  for (let i = 0; i < page.length; i++) {
    const byte = i >= 22 && i < 26 ? 0 : (page[i] as number);
    crc = ((crc << 8) ^ (CRC_TABLE[((crc >>> 24) ^ byte) & 0xff] as number)) >>> 0;
  }
  return crc;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, index) => {
  let value = index << 24;
  for (let bit = 0; bit < 8; bit++) value = value & 0x80000000 ? (value << 1) ^ 0x04c11db7 : value << 1;
  return value >>> 0;
});

function join(parts: readonly Uint8Array[], last: Uint8Array, before: number): Uint8Array {
  if (parts.length === 0) return last.slice();
  const out = new Uint8Array(before + last.length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  out.set(last, offset);
  return out;
}
