import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import wavefile from 'wavefile';
import { decodeAudio } from '../server/pipeline/audio-decode.js';
import {
  createAudioEncoder,
  createStreamingWavHeader,
  WAV_HEADER_BYTES,
} from '../server/pipeline/audio-encode.js';

function tone(frequency: number, rate: number, length: number, amplitude = 0.5): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = amplitude * Math.sin((2 * Math.PI * frequency * i) / rate);
  return out;
}

function int16s(bytes: Uint8Array, offset = 0): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let at = offset; at + 2 <= bytes.length; at += 2) out.push(view.getInt16(at, true));
  return out;
}

/** A stream the way a client receives it: the encoder's outputs for several chunks, joined. */
function encodeStream(encoding: 'linear16' | 'float32' | 'wav', rate: number, chunks: Float32Array[]) {
  const encoder = createAudioEncoder({ encoding, sampleRate: rate });
  return chunks.map((chunk) => encoder.encode(chunk));
}

describe('createAudioEncoder', () => {
  test('LINEAR16 scales by 32768, rounds, clamps and maps NaN to 0', () => {
    const encoder = createAudioEncoder({ encoding: 'linear16', sampleRate: 16000 });
    const bytes = encoder.encode(
      new Float32Array([0, 0.5, -0.5, 1, -1, 2, -2, Number.NaN, 0.4 / 32768, 0.6 / 32768, -0.6 / 32768]),
    );
    assert.equal(bytes.length, 22);
    assert.deepEqual(int16s(bytes), [0, 16384, -16384, 32767, -32768, 32767, -32768, 0, 0, 1, -1]);
  });

  test('FLOAT32 writes little-endian floats clamped to [-1, 1]', () => {
    const encoder = createAudioEncoder({ encoding: 'float32', sampleRate: 24000 });
    const bytes = encoder.encode(new Float32Array([0.25, -0.125, 1.5, -7, Number.NaN]));
    assert.deepEqual(Array.from(bytes.subarray(0, 4)), [0, 0, 0x80, 0x3e]); // 0.25 in f32le
    const view = new DataView(bytes.buffer);
    assert.deepEqual(
      [0, 4, 8, 12, 16].map((at) => view.getFloat32(at, true)),
      [0.25, -0.125, 1, -1, 0],
    );
  });

  test('WAV puts a 44-byte streaming header before the first chunk only', () => {
    const [first, second, third] = encodeStream('wav', 22050, [
      new Float32Array([0.5, -0.5]),
      new Float32Array([0.25]),
      new Float32Array(0),
    ]);
    assert.equal(first?.length, WAV_HEADER_BYTES + 4);
    assert.deepEqual(first?.subarray(0, WAV_HEADER_BYTES), createStreamingWavHeader(22050));
    assert.deepEqual(int16s(first ?? new Uint8Array(0), WAV_HEADER_BYTES), [16384, -16384]);
    assert.deepEqual(int16s(second ?? new Uint8Array(0)), [8192]);
    assert.equal(third?.length, 0);
    // A first call without samples still starts the stream with the header.
    const [empty] = encodeStream('wav', 8000, [new Float32Array(0)]);
    assert.equal(empty?.length, WAV_HEADER_BYTES);
  });

  test('the streaming header marks the length unknown and wavefile reads it', () => {
    const header = createStreamingWavHeader(24000);
    const view = new DataView(header.buffer);
    assert.equal(new TextDecoder().decode(header.subarray(0, 4)), 'RIFF');
    assert.equal(view.getUint32(4, true), 0xffffffff);
    assert.equal(view.getUint32(40, true), 0xffffffff);
    const wav = new wavefile.WaveFile();
    wav.fromBuffer(header, false);
    const fmt = wav.fmt as Record<string, unknown>;
    assert.deepEqual(
      [fmt.audioFormat, fmt.numChannels, fmt.sampleRate, fmt.byteRate, fmt.blockAlign, fmt.bitsPerSample],
      [1, 1, 24000, 48000, 2, 16],
    );
    assert.equal((wav.data as { chunkSize: number }).chunkSize, 0xffffffff);
  });

  test('each encoding round-trips through the decoder', () => {
    const input = tone(440, 16000, 16000);
    const chunks = [input.subarray(0, 5000), input.subarray(5000, 5001), input.subarray(5001)];
    for (const encoding of ['linear16', 'float32', 'wav'] as const) {
      const bytes = Buffer.concat(encodeStream(encoding, 16000, chunks));
      const format =
        encoding === 'wav' ? { encoding } : { encoding, sampleRate: 16000, channels: 1 as const };
      const decoded = decodeAudio(format, bytes);
      assert.equal(decoded.sampleRate, 16000);
      assert.equal(decoded.samples.length, input.length, encoding);
      const tolerance = encoding === 'float32' ? 0 : 0.5 / 32768;
      for (let i = 0; i < input.length; i++) {
        assert.ok(Math.abs((decoded.samples[i] ?? 0) - (input[i] ?? 0)) <= tolerance, `${encoding} ${i}`);
      }
    }
  });

  test('sox reads a streamed WAV made of header and chunks, from a file and from a pipe', () => {
    const input = tone(1000, 22050, 22050);
    const chunks = Array.from({ length: 10 }, (_, k) => input.subarray(k * 2205, (k + 1) * 2205));
    const bytes = Buffer.concat(encodeStream('wav', 22050, chunks));
    const dir = mkdtempSync(join(tmpdir(), 'audio-encode-'));
    try {
      const path = join(dir, 'stream.wav');
      writeFileSync(path, bytes);
      const info = execFileSync('sox', ['--i', path], { encoding: 'utf8' });
      assert.match(info, /Channels\s*:\s*1\n/);
      assert.match(info, /Sample Rate\s*:\s*22050\n/);
      assert.match(info, /Sample Encoding\s*:\s*16-bit Signed Integer PCM/);
      for (const source of ['file', 'pipe'] as const) {
        // sox warns about the premature end of an unbounded stream; the samples are all there.
        const args = source === 'file' ? [path] : ['-t', 'wav', '-'];
        const raw = execFileSync('sox', [...args, '-t', 's16', '-'], {
          ...(source === 'pipe' ? { input: bytes } : {}),
          stdio: [source === 'pipe' ? 'pipe' : 'ignore', 'pipe', 'ignore'],
        });
        const samples = int16s(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
        assert.equal(samples.length, 22050);
        assert.deepEqual(samples, int16s(bytes, WAV_HEADER_BYTES));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
