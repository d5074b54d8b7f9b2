import { invalidAudio } from '../errors.js';
import type { createByteQueue } from './byte-queue.js';
import { describeBytes } from './ogg-pages.js';

/** The EBML and Matroska parts the WebM walker (webm-blocks.ts) reads: element IDs and numbers. */

export const ID = {
  ebml: 0x1a45dfa3,
  docType: 0x4282,
  segment: 0x18538067,
  seekHead: 0x114d9b74,
  info: 0x1549a966,
  tracks: 0x1654ae6b,
  trackEntry: 0xae,
  trackNumber: 0xd7,
  trackType: 0x83,
  codecId: 0x86,
  codecPrivate: 0x63a2,
  cluster: 0x1f43b675,
  simpleBlock: 0xa3,
  blockGroup: 0xa0,
  block: 0xa1,
  discardPadding: 0x75a2,
  cues: 0x1c53bb6b,
  tags: 0x1254c367,
  chapters: 0x1043a770,
  attachments: 0x1941a469,
} as const;

/** Matroska's names of the elements, for messages: Segment, BlockGroup, CodecID. */
const NAMES = new Map<number, string>(
  Object.entries(ID).map(([key, id]) => [
    id,
    key === 'ebml' ? 'EBML' : `${key[0]?.toUpperCase()}${key.slice(1)}`.replace(/Id$/, 'ID'),
  ]),
);
export const MASTERS = new Set<number>([
  ID.ebml,
  ID.segment,
  ID.tracks,
  ID.trackEntry,
  ID.cluster,
  ID.blockGroup,
]);
export const LEAVES = new Set<number>([
  ID.docType,
  ID.trackNumber,
  ID.trackType,
  ID.codecId,
  ID.codecPrivate,
  ID.simpleBlock,
  ID.block,
  ID.discardPadding,
]);
/** Elements that close an unknown-size Cluster: the Segment's children. */
export const SEGMENT_CHILDREN = new Set<number>([
  ID.seekHead,
  ID.info,
  ID.tracks,
  ID.cluster,
  ID.cues,
  ID.tags,
  ID.chapters,
  ID.attachments,
]);
/**
 * An EBML variable-length integer at `start` of the unread bytes: an element ID (marker kept,
 * 1 to 4 bytes) or a size (marker dropped, 1 to 8 bytes; all ones is an unknown size, Infinity).
 */
export function readVint(
  queue: ReturnType<typeof createByteQueue>,
  start: number,
  isId: boolean,
  at: number,
): { value: number; length: number; unknown: boolean } | undefined {
  const first = queue.at(start);
  if (first === undefined) return undefined;
  const length = first === 0 ? 9 : Math.clz32(first) - 23;
  if (length > (isId ? 4 : 8)) {
    const what = isId ? 'element ID' : 'element size';
    throw at === 0
      ? invalidAudio(
          `not a WebM stream, which config.audio_format.encoding WEBM_OPUS declares: it starts with ${describeBytes(queue.view(0, Math.min(4, queue.length)))}, expected an EBML header (1A 45 DF A3)`,
          0,
        )
      : invalidAudio(
          `a corrupt ${what} at byte ${queue.offset + start} (first byte 0x${first.toString(16)})`,
          queue.offset + start,
        );
  }
  if (queue.length < start + length) return undefined;
  const mask = 0xff >> length;
  let value = isId ? first : first & mask;
  let allOnes = (first & mask) === mask;
  for (let index = 1; index < length; index++) {
    const byte = queue.at(start + index) as number;
    value = value * 256 + byte;
    allOnes &&= byte === 0xff;
  }
  if (!isId && allOnes) return { value: Number.POSITIVE_INFINITY, length, unknown: true };
  if (value > Number.MAX_SAFE_INTEGER) {
    throw invalidAudio(`an element size at byte ${queue.offset + start} is too large`, queue.offset + start);
  }
  return { value, length, unknown: false };
}

export function nameOf(id: number): string {
  return NAMES.get(id) ?? `element 0x${id.toString(16).toUpperCase()}`;
}

export function isBlock(id: number): boolean {
  return id === ID.simpleBlock || id === ID.block;
}

/** The track number at the start of a block (a size-like EBML integer). */
export function blockTrack(data: Uint8Array, at: number): { value: number; length: number } {
  const first = data[0];
  if (first === undefined || first === 0)
    throw invalidAudio(`a block at byte ${at} without a track number`, at);
  const length = Math.clz32(first) - 23;
  if (data.length < length + 3) throw invalidAudio(`a block at byte ${at} shorter than its header`, at);
  let value = first & (0xff >> length);
  for (let index = 1; index < length; index++) value = value * 256 + (data[index] as number);
  return { value, length };
}

export function unsigned(data: Uint8Array): number {
  return data.reduce((value, byte) => value * 256 + byte, 0);
}

export function signed(data: Uint8Array): number {
  const value = unsigned(data);
  return data.length > 0 && ((data[0] as number) & 0x80) !== 0 ? value - 2 ** (8 * data.length) : value;
}

export function text(data: Uint8Array): string {
  return new TextDecoder().decode(data).replace(/\0+$/, '');
}
