import { readFile } from 'node:fs/promises';
import wavefile from 'wavefile';
import { AudioEncoding } from '../../server/gen/cortex/voice/v1/audio_pb.js';
import { CliError } from './errors.js';

export interface WavInfo {
  readonly bytes: Uint8Array;
  readonly sampleRate: number;
  readonly channels: number;
  /** Bytes of audio per second, to pace a real-time stream. */
  readonly byteRate: number;
}

/** The Opus encoding a file's extension names (.ogg, .oga, .opus, .webm); undefined for anything else. */
export function opusEncodingOf(path: string): AudioEncoding | undefined {
  const extension = path.toLowerCase().split('.').pop();
  if (extension === 'ogg' || extension === 'oga' || extension === 'opus') return AudioEncoding.OGG_OPUS;
  if (extension === 'webm') return AudioEncoding.WEBM_OPUS;
  return undefined;
}

/** A file's bytes, or a CliError saying why it cannot be read. */
export async function readAudioBytes(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new CliError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, 2);
  }
}

/** Reads a WAV file and checks its header before anything is sent. */
export async function readWavFile(path: string): Promise<WavInfo> {
  const bytes = await readAudioBytes(path);
  const wav = new wavefile.WaveFile();
  try {
    wav.fromBuffer(bytes, false);
  } catch (error) {
    throw new CliError(
      `${path} is not a valid WAV file: ${error instanceof Error ? error.message : String(error)}`,
      2,
    );
  }
  const fmt = wav.fmt as { sampleRate: number; numChannels: number; byteRate: number };
  return { bytes, sampleRate: fmt.sampleRate, channels: fmt.numChannels, byteRate: fmt.byteRate };
}

/**
 * Fixes the length fields of a WAV assembled from a stream, whose header says "unknown length", so
 * that every player reads the file to its end.
 */
export function finalizeStreamedWav(bytes: Uint8Array): Uint8Array {
  if (bytes.length < 44) return bytes;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(4, bytes.length - 8, true);
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = String.fromCharCode(...bytes.subarray(offset, offset + 4));
    if (id === 'data') {
      view.setUint32(offset + 4, bytes.length - offset - 8, true);
      break;
    }
    offset += 8 + view.getUint32(offset + 4, true);
  }
  return bytes;
}
