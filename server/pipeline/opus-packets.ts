import { OpusDecoder } from 'opus-decoder';
import { invalidAudio } from '../errors.js';

/** The rates libopus decodes to directly. */
export type OpusRate = 8000 | 12000 | 16000 | 24000 | 48000;

/** The identification header of an Opus stream (RFC 7845 §5.1), as Ogg and WebM carry it. */
export interface OpusHead {
  readonly channels: 1 | 2;
  /** Samples at 48 kHz to drop from the start of the decoded audio. */
  readonly preSkip: number;
  /** The encoder's input rate: informational only. */
  readonly inputRate: number;
  /** Gain to apply, in dB. */
  readonly gainDb: number;
  readonly streamCount: number;
  readonly coupledCount: number;
  readonly mapping: readonly number[];
}

/**
 * Reads an OpusHead packet. `at` is the packet's stream offset, for messages. Channel mapping
 * family 0 (mono, stereo) and family 1 with one stream are accepted: two channels at most, as every
 * other input, since the audio is downmixed to mono.
 */
export function parseOpusHead(packet: Uint8Array, at: number): OpusHead {
  if (packet.length < 19 || ascii(packet, 0, 8) !== 'OpusHead') {
    throw invalidAudio(
      `not an Opus stream: the first packet (byte ${at}) starts with ${JSON.stringify(ascii(packet, 0, 8))}, expected "OpusHead"`,
      at,
    );
  }
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const version = packet[8] ?? 0;
  if (version >> 4 !== 0)
    throw invalidAudio(`OpusHead (byte ${at}) has version ${version}; allowed 0 to 15`, at);
  const channels = packet[9] ?? 0;
  const family = packet[18] ?? 0;
  let streamCount = 1;
  let coupledCount = channels - 1;
  let mapping = channels === 2 ? [0, 1] : [0];
  if (family === 1 && packet.length >= 21 + channels) {
    streamCount = packet[19] ?? 0;
    coupledCount = packet[20] ?? 0;
    mapping = Array.from(packet.subarray(21, 21 + channels));
  } else if (family !== 0) {
    throw invalidAudio(
      `OpusHead (byte ${at}) has channel mapping family ${family}; allowed 0, or 1 with one stream`,
      at,
    );
  }
  if ((channels !== 1 && channels !== 2) || streamCount !== 1 || coupledCount !== channels - 1) {
    throw invalidAudio(
      `OpusHead (byte ${at}) has ${channels} channels in ${streamCount} streams (${coupledCount} coupled); allowed 1 or 2 channels in one stream`,
      at,
    );
  }
  return {
    channels,
    preSkip: view.getUint16(10, true),
    inputRate: view.getUint32(12, true),
    gainDb: view.getInt16(16, true) / 256,
    streamCount,
    coupledCount,
    mapping,
  };
}

/** Whether a packet is an OpusTags comment header (RFC 7845 §5.2). */
export function isOpusTags(packet: Uint8Array): boolean {
  return ascii(packet, 0, 8) === 'OpusTags';
}

/** Samples of a 48 kHz frame for each TOC configuration (RFC 6716 §3.1): SILK, hybrid, CELT. */
const FRAME_SAMPLES = [
  480, 960, 1920, 2880, 480, 960, 1920, 2880, 480, 960, 1920, 2880, 480, 960, 480, 960, 120, 240, 480, 960,
  120, 240, 480, 960, 120, 240, 480, 960, 120, 240, 480, 960,
];
const MAX_FRAME_BYTES = 1275;
const MAX_PACKET_SAMPLES = 5760;

/**
 * Checks a packet's framing against RFC 6716 §3.4 (R1–R7), the rules libopus refuses packets by.
 * Returns what is wrong, or undefined for a well-formed packet.
 */
export function opusPacketProblem(packet: Uint8Array): string | undefined {
  const toc = packet[0];
  if (toc === undefined) return 'an empty packet';
  const frameSamples = FRAME_SAMPLES[toc >> 3] as number;
  const bytes = packet.length - 1;
  switch (toc & 3) {
    case 0:
      return bytes > MAX_FRAME_BYTES ? `a frame of ${bytes} bytes (at most ${MAX_FRAME_BYTES})` : undefined;
    case 1:
      if (bytes % 2 !== 0) return `two equal frames in an odd ${bytes} bytes`;
      return bytes / 2 > MAX_FRAME_BYTES
        ? `frames of ${bytes / 2} bytes (at most ${MAX_FRAME_BYTES})`
        : undefined;
    case 2: {
      const length = frameLength(packet, 1);
      if (length === undefined || length.end + length.value > packet.length) {
        return 'a first frame longer than the packet';
      }
      const second = packet.length - length.end - length.value;
      return second > MAX_FRAME_BYTES ? `a frame of ${second} bytes (at most ${MAX_FRAME_BYTES})` : undefined;
    }
    default: {
      const header = packet[1];
      if (header === undefined) return 'a code 3 packet without its frame count';
      const count = header & 0x3f;
      if (count === 0) return 'a code 3 packet of 0 frames';
      if (count * frameSamples > MAX_PACKET_SAMPLES) return `${count} frames, more than 120 ms`;
      let at = 2;
      let padding = 0;
      if ((header & 0x40) !== 0) {
        for (let more = true; more; ) {
          const value = packet[at++];
          if (value === undefined) return 'padding longer than the packet';
          padding += value === 255 ? 254 : value;
          more = value === 255;
        }
      }
      let left = packet.length - at - padding;
      if (left < 0) return 'padding longer than the packet';
      if ((header & 0x80) === 0) {
        if (left % count !== 0) return `${count} equal frames in ${left} bytes`;
        return left / count > MAX_FRAME_BYTES
          ? `frames of ${left / count} bytes (at most ${MAX_FRAME_BYTES})`
          : undefined;
      }
      for (let frame = 0; frame < count - 1; frame++) {
        const length = frameLength(packet, at);
        if (length === undefined) return 'frame lengths past the end of the packet';
        left -= length.end - at + length.value;
        at = length.end;
        if (left < 0) return 'frames longer than the packet';
      }
      return left > MAX_FRAME_BYTES ? `a frame of ${left} bytes (at most ${MAX_FRAME_BYTES})` : undefined;
    }
  }
}

/** A frame length coded in one or two bytes (RFC 6716 §3.2.1). */
function frameLength(packet: Uint8Array, at: number): { value: number; end: number } | undefined {
  const first = packet[at];
  if (first === undefined) return undefined;
  if (first < 252) return { value: first, end: at + 1 };
  const second = packet[at + 1];
  return second === undefined ? undefined : { value: first + 4 * second, end: at + 2 };
}

/** Decodes the packets of one Opus stream to mono samples, pre-skip dropped and gain applied. */
export interface OpusPacketDecoder {
  readonly sampleRate: OpusRate;
  /** Decodes one packet; `at` is its stream offset, for messages. */
  decode(packet: Uint8Array, at: number): Float32Array;
  free(): void;
}

/** Starts libopus (a WebAssembly instance of its own) for a stream with this header. */
export async function createOpusPacketDecoder(
  head: OpusHead,
  sampleRate: OpusRate,
): Promise<OpusPacketDecoder> {
  const decoder = new OpusDecoder({
    sampleRate,
    channels: head.channels,
    streamCount: head.streamCount,
    coupledStreamCount: head.coupledCount,
    channelMappingTable: [...head.mapping],
  });
  await decoder.ready;
  let skip = Math.round((head.preSkip * sampleRate) / 48000);
  const gain = head.gainDb === 0 ? 1 : 10 ** (head.gainDb / 20);
  // libopus's input buffer holds this much; a longer packet is not a valid Opus packet anyway.
  const maxBytes = 3840 * head.channels;
  let freed = false;
  return {
    sampleRate,
    decode(packet, at) {
      const problem =
        packet.length > maxBytes
          ? `${packet.length} bytes, longer than 120 ms can take`
          : opusPacketProblem(packet);
      // Checked here, because libopus would write its complaint to stderr itself.
      if (problem !== undefined) throw invalidAudio(`corrupt Opus packet at byte ${at}: ${problem}`, at);
      const { channelData, samplesDecoded, errors } = decoder.decodeFrame(packet);
      if (errors.length > 0) {
        throw invalidAudio(
          `corrupt Opus packet at byte ${at}: ${errors[0]?.message ?? 'libopus refused it'}`,
          at,
        );
      }
      const left = channelData[0] ?? new Float32Array(0);
      const right = channelData[1];
      const start = Math.min(skip, samplesDecoded);
      skip -= start;
      const out = new Float32Array(samplesDecoded - start);
      for (let i = 0; i < out.length; i++) {
        const sample =
          right === undefined
            ? (left[start + i] as number)
            : ((left[start + i] as number) + (right[start + i] as number)) / 2;
        out[i] = Math.max(-1, Math.min(1, sample * gain));
      }
      return out;
    },
    free() {
      if (freed) return;
      freed = true;
      decoder.free();
    },
  };
}

function ascii(bytes: Uint8Array, start: number, length: number): string {
  return String.fromCharCode(...bytes.subarray(start, start + length));
}
