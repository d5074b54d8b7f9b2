import { invalidArgument } from '../errors.js';
import { AudioEncoding, type AudioFormat } from '../gen/cortex/voice/v1/audio_pb.js';

export const MIN_SAMPLE_RATE = 8000;
export const MAX_SAMPLE_RATE = 48000;

/** Raw PCM input: the client states the rate and channel count. */
export interface RawInputFormat {
  readonly encoding: 'linear16' | 'float32' | 'mulaw' | 'alaw';
  readonly sampleRate: number;
  readonly channels: 1 | 2;
}

/** WAV input: the header states the layout; values given here must agree with it. */
export interface WavInputFormat {
  readonly encoding: 'wav';
  readonly sampleRate?: number;
  readonly channels?: 1 | 2;
}

/**
 * Opus in Ogg or WebM: the stream's OpusHead states the channels; a value given here must agree.
 * There is no sample rate to state: Opus is decoded at the rate recognition needs.
 */
export interface OpusInputFormat {
  readonly encoding: 'ogg-opus' | 'webm-opus';
  readonly channels?: 1 | 2;
}

/** Whether a format is one of the Opus containers. */
export function isOpusFormat(format: InputFormat): format is OpusInputFormat {
  return format.encoding === 'ogg-opus' || format.encoding === 'webm-opus';
}

/** Formats decoded sample by sample, with no codec state. */
export type PcmInputFormat = RawInputFormat | WavInputFormat;

/** A validated input format. */
export type InputFormat = PcmInputFormat | OpusInputFormat;

export type OutputEncoding = 'linear16' | 'float32' | 'wav';

/** A validated output format; no sample rate means the voice's native rate. */
export interface OutputFormat {
  readonly encoding: OutputEncoding;
  readonly sampleRate?: number;
}

const ALLOWED_ENCODINGS = 'allowed LINEAR16, FLOAT32, WAV';
const ALLOWED_INPUT_ENCODINGS = 'allowed LINEAR16, FLOAT32, WAV, MULAW, ALAW, OGG_OPUS, WEBM_OPUS';
const ALLOWED_RATES = `allowed ${MIN_SAMPLE_RATE} to ${MAX_SAMPLE_RATE}`;

/**
 * Checks the audio format of a transcription and normalises it. Throws INVALID_ARGUMENT naming the
 * offending field. Zero rate or channels mean "not set", which WAV allows (the header decides);
 * Opus requires a zero rate and allows zero channels (its OpusHead decides).
 */
export function validateInputFormat(
  format: AudioFormat | undefined,
  field = 'config.audio_format',
): InputFormat {
  if (format === undefined) {
    throw invalidArgument(field, 'missing; set encoding (and sample_rate_hz, channels for raw PCM)');
  }
  const encoding = inputEncodingName(format.encoding, `${field}.encoding`);
  if (encoding === 'ogg-opus' || encoding === 'webm-opus') {
    if (format.sampleRateHz !== 0) {
      throw invalidArgument(
        `${field}.sample_rate_hz`,
        `${format.sampleRateHz} is not allowed with ${AudioEncoding[format.encoding]}; set 0: Opus is decoded at the rate recognition uses, whatever rate it was recorded at`,
      );
    }
    const channels = format.channels === 0 ? undefined : checkChannels(format.channels, field);
    return { encoding, ...(channels === undefined ? {} : { channels }) };
  }
  if (encoding === 'wav') {
    const sampleRate = format.sampleRateHz === 0 ? undefined : checkRate(format.sampleRateHz, field);
    const channels = format.channels === 0 ? undefined : checkChannels(format.channels, field);
    return {
      encoding,
      ...(sampleRate === undefined ? {} : { sampleRate }),
      ...(channels === undefined ? {} : { channels }),
    };
  }
  return {
    encoding,
    sampleRate: checkRate(format.sampleRateHz, field),
    channels: checkChannels(format.channels, field),
  };
}

/**
 * Checks the output settings of a synthesis: UNSPECIFIED means LINEAR16, a zero rate means the
 * voice's native rate. `field` is the message holding `encoding` and `sample_rate_hz`.
 */
export function validateOutputFormat(
  encoding: AudioEncoding,
  sampleRateHz: number,
  field = 'config',
): OutputFormat {
  const name =
    encoding === AudioEncoding.UNSPECIFIED ? 'linear16' : encodingName(encoding, `${field}.encoding`);
  if (sampleRateHz === 0) return { encoding: name };
  return { encoding: name, sampleRate: checkRate(sampleRateHz, field) };
}

/** The protobuf enum value of an encoding, for the `format` field of responses. */
export function toAudioEncoding(encoding: OutputEncoding): AudioEncoding {
  switch (encoding) {
    case 'linear16':
      return AudioEncoding.LINEAR16;
    case 'float32':
      return AudioEncoding.FLOAT32;
    case 'wav':
      return AudioEncoding.WAV;
  }
}

function inputEncodingName(encoding: AudioEncoding, field: string): InputFormat['encoding'] {
  switch (encoding) {
    case AudioEncoding.MULAW:
      return 'mulaw';
    case AudioEncoding.ALAW:
      return 'alaw';
    case AudioEncoding.OGG_OPUS:
      return 'ogg-opus';
    case AudioEncoding.WEBM_OPUS:
      return 'webm-opus';
    case AudioEncoding.UNSPECIFIED:
      throw invalidArgument(field, `missing; ${ALLOWED_INPUT_ENCODINGS}`);
    case AudioEncoding.LINEAR16:
    case AudioEncoding.FLOAT32:
    case AudioEncoding.WAV:
      return encodingName(encoding, field);
    default:
      throw invalidArgument(field, `${String(encoding)} is not a known encoding; ${ALLOWED_INPUT_ENCODINGS}`);
  }
}

function encodingName(encoding: AudioEncoding, field: string): OutputEncoding {
  switch (encoding) {
    case AudioEncoding.LINEAR16:
      return 'linear16';
    case AudioEncoding.FLOAT32:
      return 'float32';
    case AudioEncoding.WAV:
      return 'wav';
    case AudioEncoding.UNSPECIFIED:
      throw invalidArgument(field, `missing; ${ALLOWED_ENCODINGS}`);
    case AudioEncoding.MULAW:
    case AudioEncoding.ALAW:
    case AudioEncoding.OGG_OPUS:
    case AudioEncoding.WEBM_OPUS:
      throw invalidArgument(
        field,
        `${AudioEncoding[encoding]} is accepted for input only; ${ALLOWED_ENCODINGS}`,
      );
    default:
      // Open enums: an unknown number from a newer client arrives as is.
      throw invalidArgument(field, `${String(encoding)} is not a known encoding; ${ALLOWED_ENCODINGS}`);
  }
}

function checkRate(rate: number, field: string): number {
  if (!Number.isInteger(rate) || rate < MIN_SAMPLE_RATE || rate > MAX_SAMPLE_RATE) {
    throw invalidArgument(`${field}.sample_rate_hz`, `${rate} is out of range; ${ALLOWED_RATES}`);
  }
  return rate;
}

function checkChannels(channels: number, field: string): 1 | 2 {
  if (channels !== 1 && channels !== 2) {
    throw invalidArgument(`${field}.channels`, `${channels} is out of range; allowed 1 or 2`);
  }
  return channels;
}
