import wavefile from 'wavefile';
import type { PcmAudio } from '../engines/types.js';
import { invalidArgument, invalidAudio } from '../errors.js';
import {
  type InputFormat,
  isOpusFormat,
  MAX_SAMPLE_RATE,
  MIN_SAMPLE_RATE,
  type PcmInputFormat,
} from './audio-format.js';
import { createOpusStreamDecoder } from './opus-decode.js';
import type { OpusRate } from './opus-packets.js';

/**
 * A streaming decoder from audio bytes to mono float samples in [-1, 1].
 *
 * Chunks may split samples, stereo frames and the WAV header anywhere; the unfinished part is kept
 * for the next push. Stereo is averaged to mono. FLOAT32 values outside [-1, 1] are clamped, NaN and
 * ±Infinity are rejected. At the end, a partial frame left over is an error for raw PCM (the byte
 * count does not fit the declared layout) and dropped for WAV (a truncated file, as sox and ffmpeg
 * treat it).
 */
export interface AudioDecoder {
  /** Samples per second of the output; undefined for WAV until the header has arrived. */
  readonly sampleRate: number | undefined;
  /** Decodes a chunk; returns the samples completed by it (possibly none). */
  push(chunk: Uint8Array): Float32Array;
  /** Ends the stream; returns what is left. Throws INVALID_AUDIO if the stream stopped too early. */
  end(): Float32Array;
}

export interface AudioDecoderOptions {
  /** Path of the format in the request, for error messages. */
  readonly field?: string;
  /** Longest WAV header accepted before the `data` chunk; longer is INVALID_AUDIO. */
  readonly maxHeaderBytes?: number;
}

type SampleType = 'int16' | 'int24' | 'int32' | 'float32' | 'mulaw' | 'alaw';

interface Layout {
  readonly type: SampleType;
  readonly channels: 1 | 2;
  readonly sampleRate: number;
}

const BYTES: Record<SampleType, number> = { int16: 2, int24: 3, int32: 4, float32: 4, mulaw: 1, alaw: 1 };
const NO_SAMPLES = new Float32Array(0);
const DEFAULT_MAX_HEADER_BYTES = 64 * 1024;
/** A data chunk length of 0 or 0xFFFFFFFF marks a stream of unknown length. */
const UNKNOWN_SIZES = new Set([0, 0xffffffff]);

const RAW_SAMPLE_TYPES = {
  linear16: 'int16',
  float32: 'float32',
  mulaw: 'mulaw',
  alaw: 'alaw',
} as const satisfies Record<Exclude<PcmInputFormat['encoding'], 'wav'>, SampleType>;

/**
 * A decoder for every input encoding, as the recognition pipeline reads them: PCM answers at once,
 * Opus once libopus has started (after the stream's OpusHead). One push at a time.
 */
export interface StreamAudioDecoder {
  /** Samples per second of the output; undefined for WAV until the header has arrived. */
  readonly sampleRate: number | undefined;
  push(chunk: Uint8Array): Promise<Float32Array>;
  end(): Promise<Float32Array>;
  /** Releases what the decoder holds (libopus's instance). Idempotent. */
  close(): void;
}

export interface StreamAudioDecoderOptions extends AudioDecoderOptions {
  /** The rate Opus is decoded to. */
  readonly opusRate: OpusRate;
}

export function openAudioDecoder(
  format: InputFormat,
  options: StreamAudioDecoderOptions,
): StreamAudioDecoder {
  if (isOpusFormat(format)) {
    return createOpusStreamDecoder({
      container: format.encoding === 'ogg-opus' ? 'ogg' : 'webm',
      sampleRate: options.opusRate,
      ...(format.channels === undefined ? {} : { channels: format.channels }),
      ...(options.field === undefined ? {} : { field: options.field }),
    });
  }
  const decoder = createAudioDecoder(format, options);
  return {
    get sampleRate() {
      return decoder.sampleRate;
    },
    push: async (chunk) => decoder.push(chunk),
    end: async () => decoder.end(),
    close() {},
  };
}

export function createAudioDecoder(format: PcmInputFormat, options: AudioDecoderOptions = {}): AudioDecoder {
  const field = options.field ?? 'config.audio_format';
  const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;

  let layout: Layout | undefined =
    format.encoding === 'wav'
      ? undefined
      : {
          type: RAW_SAMPLE_TYPES[format.encoding],
          channels: format.channels,
          sampleRate: format.sampleRate,
        };
  // Header bytes so far, in a buffer that doubles so byte-sized pushes stay linear.
  let header = new Uint8Array(0);
  let headerLength = 0;
  let pending = new Uint8Array(0);
  /** Bytes of sample data still expected; Infinity when the length is unknown. */
  let remaining = Number.POSITIVE_INFINITY;
  let dataOffset = 0;
  let ended = false;

  function decodeData(chunk: Uint8Array): Float32Array {
    if (layout === undefined || chunk.length === 0 || remaining === 0) return NO_SAMPLES;
    let bytes = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk;
    remaining -= bytes.length;
    if (pending.length > 0) {
      const joined = new Uint8Array(pending.length + bytes.length);
      joined.set(pending);
      joined.set(bytes, pending.length);
      bytes = joined;
    }
    const frameBytes = BYTES[layout.type] * layout.channels;
    const usable = bytes.length - (bytes.length % frameBytes);
    const samples = decodeFrames(bytes.subarray(0, usable), layout, dataOffset);
    dataOffset += usable;
    pending = bytes.slice(usable);
    return samples;
  }

  function readHeader(chunk: Uint8Array): Float32Array {
    if (headerLength + chunk.length > header.length) {
      const grown = new Uint8Array(Math.max(256, header.length * 2, headerLength + chunk.length));
      grown.set(header.subarray(0, headerLength));
      header = grown;
    }
    header.set(chunk, headerLength);
    headerLength += chunk.length;
    const bytes = header.subarray(0, headerLength);
    const found = findDataChunk(bytes, maxHeaderBytes);
    if (found === undefined) return NO_SAMPLES;
    layout = parseWavHeader(bytes.subarray(0, found.dataStart), format, field);
    if (!UNKNOWN_SIZES.has(found.dataSize) && found.container === 'RIFF') remaining = found.dataSize;
    header = new Uint8Array(0);
    return decodeData(bytes.subarray(found.dataStart));
  }

  return {
    get sampleRate() {
      return layout?.sampleRate;
    },
    push(chunk) {
      if (ended) throw new Error('push() after end()');
      return layout === undefined ? readHeader(chunk) : decodeData(chunk);
    },
    end() {
      if (ended) return NO_SAMPLES;
      ended = true;
      if (layout === undefined) {
        if (headerLength === 0) return NO_SAMPLES;
        throw invalidAudio(
          `WAV header incomplete: the stream ended after ${headerLength} bytes, before the 'data' chunk`,
        );
      }
      if (pending.length > 0 && format.encoding !== 'wav') {
        const frameBytes = BYTES[layout.type] * layout.channels;
        throw invalidAudio(
          `the stream ended inside a sample frame: ${pending.length} bytes left over; ` +
            `${format.encoding.toUpperCase()} with ${layout.channels} channel(s) takes ${frameBytes} bytes per frame`,
        );
      }
      pending = new Uint8Array(0);
      return NO_SAMPLES;
    },
  };
}

/** Decodes a whole clip at once. */
export function decodeAudio(
  format: PcmInputFormat,
  bytes: Uint8Array,
  options: AudioDecoderOptions = {},
): PcmAudio {
  const decoder = createAudioDecoder(format, options);
  const samples = decoder.push(bytes);
  // push() returns every complete frame, so end() only checks what is left over.
  decoder.end();
  const sampleRate = decoder.sampleRate;
  if (sampleRate === undefined) throw invalidAudio('the audio is empty: no WAV header');
  return { samples, sampleRate };
}

function decodeFrames(bytes: Uint8Array, layout: Layout, offset: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = BYTES[layout.type];
  const count = bytes.length / width;
  const read = readerOf(layout.type);
  if (layout.type === 'float32') {
    for (let i = 0; i < count; i++) {
      if (!Number.isFinite(view.getFloat32(i * 4, true))) {
        throw invalidAudio(`FLOAT32 sample at data byte ${offset + i * 4} is NaN or infinite`);
      }
    }
  }
  if (layout.channels === 1) {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = read(view, i * width);
    return out;
  }
  const out = new Float32Array(count / 2);
  for (let i = 0, p = 0; i < out.length; i++, p += 2 * width) {
    out[i] = (read(view, p) + read(view, p + width)) / 2;
  }
  return out;
}

type Reader = (view: DataView, at: number) => number;

function readerOf(type: SampleType): Reader {
  switch (type) {
    case 'int16':
      return (view, at) => view.getInt16(at, true) / 0x8000;
    case 'int24':
      // Low byte unsigned, high 16 bits signed.
      return (view, at) => (view.getUint8(at) + view.getInt16(at + 1, true) * 0x100) / 0x800000;
    case 'int32':
      return (view, at) => view.getInt32(at, true) / 0x80000000;
    case 'float32':
      return (view, at) => Math.max(-1, Math.min(1, view.getFloat32(at, true)));
    case 'mulaw':
      return (view, at) => MULAW[view.getUint8(at)] as number;
    case 'alaw':
      return (view, at) => ALAW[view.getUint8(at)] as number;
  }
}

/**
 * G.711 expansion tables (ITU-T G.711; the classic Sun reference code's `ulaw2linear` and
 * `alaw2linear`), to 16-bit linear values scaled to [-1, 1].
 */
const MULAW = Float32Array.from({ length: 256 }, (_, byte) => {
  const u = ~byte & 0xff;
  const magnitude = ((((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4)) - 0x84;
  // Code 0x7f is negative zero; + 0 makes it plain zero.
  return ((u & 0x80) !== 0 ? -magnitude : magnitude) / 0x8000 + 0;
});
const ALAW = Float32Array.from({ length: 256 }, (_, byte) => {
  const a = byte ^ 0x55;
  const segment = (a & 0x70) >> 4;
  let magnitude = (a & 0x0f) << 4;
  magnitude =
    segment === 0 ? magnitude + 8 : segment === 1 ? magnitude + 0x108 : (magnitude + 0x108) << (segment - 1);
  return ((a & 0x80) !== 0 ? magnitude : -magnitude) / 0x8000;
});

interface DataChunk {
  readonly container: 'RIFF' | 'RF64';
  /** Offset of the first sample byte. */
  readonly dataStart: number;
  /** The data chunk's declared length. */
  readonly dataSize: number;
}

/**
 * Walks the RIFF chunk headers until the `data` chunk. Returns undefined while more bytes are
 * needed; throws as soon as the bytes cannot be a WAV stream.
 */
function findDataChunk(bytes: Uint8Array, maxHeaderBytes: number): DataChunk | undefined {
  if (bytes.length >= 4) {
    const id = fourCC(bytes, 0);
    if (id === 'RIFX') throw invalidAudio('big-endian RIFX WAV is not supported; send RIFF');
    if (id !== 'RIFF' && id !== 'RF64') {
      throw invalidAudio(`not a WAV stream: it starts with ${JSON.stringify(id)}, expected "RIFF"`);
    }
  }
  if (bytes.length >= 12 && fourCC(bytes, 8) !== 'WAVE') {
    throw invalidAudio(
      `not a WAV stream: the RIFF form is ${JSON.stringify(fourCC(bytes, 8))}, expected "WAVE"`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let fmtSeen = false;
  // Decided by chunk positions, not by bytes received, so the outcome does not depend on chunking.
  for (let at = 12; ; ) {
    if (at + 8 > maxHeaderBytes) {
      throw invalidAudio(`WAV header has no 'data' chunk within the first ${maxHeaderBytes} bytes`);
    }
    if (at + 8 > bytes.length) return undefined;
    const id = fourCC(bytes, at);
    const size = view.getUint32(at + 4, true);
    if (id === 'data') {
      if (!fmtSeen) throw invalidAudio("WAV header has no 'fmt ' chunk before the 'data' chunk");
      const container = fourCC(bytes, 0) === 'RF64' ? 'RF64' : 'RIFF';
      return { container, dataStart: at + 8, dataSize: size };
    }
    if (id === 'fmt ') {
      if (size < 16) throw invalidAudio(`WAV 'fmt ' chunk is ${size} bytes; expected at least 16`);
      fmtSeen = true;
    }
    at += 8 + size + (size % 2);
  }
}

interface FmtChunk {
  audioFormat: number;
  numChannels: number;
  sampleRate: number;
  blockAlign: number;
  bitsPerSample: number;
  subformat: number[];
}

const FORMAT_NAMES: Record<number, string> = {
  2: 'Microsoft ADPCM',
  6: 'A-law',
  7: 'mu-law',
  17: 'IMA ADPCM',
  85: 'MP3',
};
const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_IEEE_FLOAT = 3;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** Reads the `fmt ` chunk (with wavefile) from the header bytes up to the start of the samples. */
function parseWavHeader(bytes: Uint8Array, declared: PcmInputFormat, field: string): Layout {
  const wav = new wavefile.WaveFile();
  try {
    wav.fromBuffer(bytes, false);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw invalidAudio(`WAV header cannot be read: ${reason}`);
  }
  const fmt = wav.fmt as FmtChunk;
  let code = fmt.audioFormat;
  if (code === WAVE_FORMAT_EXTENSIBLE) {
    // The sub-format GUID starts with the plain format code.
    code = (fmt.subformat[0] ?? 0) & 0xffff;
  }
  if (code !== WAVE_FORMAT_PCM && code !== WAVE_FORMAT_IEEE_FLOAT) {
    const name = FORMAT_NAMES[code];
    throw invalidAudio(
      `WAV audio format ${code}${name === undefined ? '' : ` (${name})`} is not supported; ` +
        'allowed PCM (1), IEEE float (3), or either inside WAVE_FORMAT_EXTENSIBLE',
    );
  }
  const bits = fmt.bitsPerSample;
  const type = sampleTypeOf(code === WAVE_FORMAT_IEEE_FLOAT, bits);
  if (type === undefined) {
    throw invalidAudio(
      `WAV ${bits}-bit ${code === WAVE_FORMAT_PCM ? 'integer' : 'float'} samples are not supported; ` +
        'allowed 16, 24 or 32-bit integer or 32-bit float',
    );
  }
  const channels = fmt.numChannels;
  if (channels !== 1 && channels !== 2) {
    throw invalidAudio(`WAV header has ${channels} channels; allowed 1 or 2`);
  }
  const rate = fmt.sampleRate;
  if (rate < MIN_SAMPLE_RATE || rate > MAX_SAMPLE_RATE) {
    throw invalidAudio(
      `WAV sample rate ${rate} Hz is out of range; allowed ${MIN_SAMPLE_RATE} to ${MAX_SAMPLE_RATE}`,
    );
  }
  if (fmt.blockAlign !== channels * BYTES[type]) {
    throw invalidAudio(
      `WAV block align ${fmt.blockAlign} does not match ${channels} channel(s) of ${bits} bits`,
    );
  }
  if (declared.sampleRate !== undefined && declared.sampleRate !== rate) {
    throw invalidArgument(
      `${field}.sample_rate_hz`,
      `${declared.sampleRate} does not match the WAV header's ${rate}; set 0 to use the header's`,
    );
  }
  if (declared.channels !== undefined && declared.channels !== channels) {
    throw invalidArgument(
      `${field}.channels`,
      `${declared.channels} does not match the WAV header's ${channels}; set 0 to use the header's`,
    );
  }
  return { type, channels, sampleRate: rate };
}

function sampleTypeOf(float: boolean, bits: number): SampleType | undefined {
  if (float) return bits === 32 ? 'float32' : undefined;
  if (bits === 16) return 'int16';
  if (bits === 24) return 'int24';
  if (bits === 32) return 'int32';
  return undefined;
}

function fourCC(bytes: Uint8Array, at: number): string {
  return String.fromCharCode(bytes[at] ?? 0, bytes[at + 1] ?? 0, bytes[at + 2] ?? 0, bytes[at + 3] ?? 0);
}
