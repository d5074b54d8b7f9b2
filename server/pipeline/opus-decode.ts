import { invalidArgument, invalidAudio } from '../errors.js';
import { createOggDemuxer, type OggPacket } from './ogg-pages.js';
import {
  createOpusPacketDecoder,
  isOpusTags,
  type OpusHead,
  type OpusPacketDecoder,
  type OpusRate,
  parseOpusHead,
} from './opus-packets.js';
import { concatSamples } from './samples.js';
import { createWebmDemuxer, type WebmItem } from './webm-blocks.js';

/**
 * A streaming decoder from Ogg Opus or WebM Opus bytes, in chunks split anywhere, to mono samples
 * at a rate libopus decodes to directly. Pre-skip, Ogg's end trimming (the last page's granule
 * position) and WebM's DiscardPadding are applied, so the output is as long as libopus's own tools
 * make it. libopus needs its WebAssembly instance before the first packet, hence the promises:
 * one push at a time.
 */
export interface OpusStreamDecoder {
  readonly sampleRate: OpusRate;
  push(chunk: Uint8Array): Promise<Float32Array>;
  /** Ends the stream; throws INVALID_AUDIO if it stopped inside a page, element or packet. */
  end(): Promise<Float32Array>;
  /** Releases libopus. Idempotent. */
  close(): void;
}

export interface OpusStreamOptions {
  readonly container: 'ogg' | 'webm';
  readonly sampleRate: OpusRate;
  /** Channels the request declared; the stream's OpusHead must agree. */
  readonly channels?: 1 | 2;
  /** Path of the format in the request, for error messages. */
  readonly field?: string;
}

/** A packet of either container, in the terms trimming needs. */
interface Packet {
  readonly data: Uint8Array;
  readonly at: number;
  /** Ogg: the end-of-stream page's granule position. */
  readonly finalGranule?: number;
  /** WebM: nanoseconds to drop from the packet's end. */
  readonly discardNs?: number;
}

const NO_SAMPLES = new Float32Array(0);

export function createOpusStreamDecoder(options: OpusStreamOptions): OpusStreamDecoder {
  const { container, sampleRate } = options;
  const field = options.field ?? 'config.audio_format';
  const ogg = container === 'ogg' ? createOggDemuxer() : undefined;
  const webm = container === 'webm' ? createWebmDemuxer() : undefined;
  let head: OpusHead | undefined;
  let opus: OpusPacketDecoder | undefined;
  /** Ogg packets read: the first is OpusHead, the second OpusTags. */
  let oggPackets = 0;
  /** Samples put out so far, after pre-skip. */
  let emitted = 0;
  let closed = false;

  async function start(data: Uint8Array, at: number): Promise<void> {
    head = parseOpusHead(data, at);
    if (options.channels !== undefined && options.channels !== head.channels) {
      throw invalidArgument(
        `${field}.channels`,
        `${options.channels} does not match the stream's OpusHead, which has ${head.channels}; set 0 to use the stream's`,
      );
    }
    opus = await createOpusPacketDecoder(head, sampleRate);
    if (closed) opus.free();
  }

  function decode(packet: Packet): Float32Array {
    if (opus === undefined || head === undefined) throw new Error('an Opus packet before OpusHead');
    let samples = opus.decode(packet.data, packet.at);
    if (packet.finalGranule !== undefined) {
      // RFC 7845 §4.5: the last page's granule position (48 kHz, pre-skip included) ends the audio.
      const total = Math.round(((packet.finalGranule - head.preSkip) * sampleRate) / 48000);
      samples = samples.subarray(0, Math.max(0, Math.min(samples.length, total - emitted)));
    } else if (packet.discardNs !== undefined && packet.discardNs > 0) {
      const drop = Math.round((packet.discardNs * sampleRate) / 1e9);
      samples = samples.subarray(0, Math.max(0, samples.length - drop));
    }
    emitted += samples.length;
    return samples;
  }

  async function fromOgg(packets: OggPacket[]): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const packet of packets) {
      const index = oggPackets++;
      if (index === 0) await start(packet.data, packet.offset);
      else if (index === 1) {
        if (!isOpusTags(packet.data)) {
          throw invalidAudio(`the second Ogg packet (byte ${packet.offset}) is not OpusTags`, packet.offset);
        }
      } else {
        const decoded = decode({
          data: packet.data,
          at: packet.offset,
          ...(packet.finalGranule === undefined ? {} : { finalGranule: packet.finalGranule }),
        });
        out.push(decoded);
      }
    }
    return out;
  }

  async function fromWebm(items: WebmItem[]): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const item of items) {
      if (item.type === 'head') await start(item.data, item.at);
      else out.push(decode(item));
    }
    return out;
  }

  const read = async (chunk: Uint8Array): Promise<Float32Array> => {
    if (closed) throw new Error('push() after close()');
    const parts =
      ogg !== undefined ? await fromOgg(ogg.push(chunk)) : await fromWebm(webm?.push(chunk) ?? []);
    return concatSamples(parts);
  };

  return {
    sampleRate,
    push: read,
    async end() {
      ogg?.end();
      webm?.end();
      if (ogg !== undefined && oggPackets > 0 && oggPackets < 2) {
        throw invalidAudio('the stream ended before its OpusTags header');
      }
      return NO_SAMPLES;
    },
    close() {
      if (closed) return;
      closed = true;
      opus?.free();
    },
  };
}
