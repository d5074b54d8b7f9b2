import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import wavefile from 'wavefile';

export const RATE = 16_000;

/** Real speech from Debian's espeak-ng, as 16 kHz mono float samples (resampled by sox). */
export function speak(text: string, voice = 'en-us'): Float32Array {
  const dir = mkdtempSync(join(tmpdir(), 'voice-speech-'));
  const raw = join(dir, 'raw.wav');
  const out = join(dir, 'out.wav');
  run('espeak-ng', ['-v', voice, '-w', raw, '--', text]);
  run('sox', [raw, '-r', String(RATE), '-c', '1', '-b', '16', out]);
  return readWav(readFileSync(out));
}

export function readWav(bytes: Uint8Array): Float32Array {
  const wav = new wavefile.WaveFile(bytes);
  wav.toBitDepth('32f');
  const samples = wav.getSamples(false, Float64Array) as unknown as Float64Array;
  return Float32Array.from(samples);
}

export function silence(seconds: number): Float32Array {
  return new Float32Array(Math.round(seconds * RATE));
}

export function concat(...parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Where the non-silent part of a clip starts and ends, in ms (5 ms windows above −40 dBFS). */
export function speechBounds(samples: Float32Array): { startMs: number; endMs: number } {
  const window = RATE / 200;
  let first = -1;
  let last = -1;
  for (let start = 0; start + window <= samples.length; start += window) {
    let energy = 0;
    for (let index = start; index < start + window; index += 1) energy += (samples[index] ?? 0) ** 2;
    if (Math.sqrt(energy / window) > 0.01) {
      if (first < 0) first = start;
      last = start + window;
    }
  }
  return { startMs: (first / RATE) * 1000, endMs: (last / RATE) * 1000 };
}

/** Float samples as little-endian signed 16-bit PCM. */
export function toLinear16(samples: Float32Array): Uint8Array {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  samples.forEach((sample, index) => {
    view.setInt16(index * 2, Math.max(-32768, Math.min(32767, Math.round(sample * 32768))), true);
  });
  return bytes;
}

/** Root mean square of the samples. */
export function rms(samples: Float32Array): number {
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  return Math.sqrt(sum / Math.max(1, samples.length));
}

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr || result.error?.message}`);
}
