import { execFileSync } from 'node:child_process';

/**
 * Encodes a WAV with Debian's ffmpeg (libopus); `args` go before the output, e.g.
 * `['-f', 'webm', '-live', '1']`. Returns the container's bytes.
 */
export function ffmpegEncode(wav: Uint8Array, format: 'ogg' | 'webm', args: string[] = []): Uint8Array {
  return Uint8Array.from(
    execFileSync(
      'ffmpeg',
      ['-v', 'error', '-i', 'pipe:0', '-c:a', 'libopus', '-b:a', '32k', ...args, '-f', format, 'pipe:1'],
      { input: wav, maxBuffer: 64 << 20 },
    ),
  );
}

/**
 * libopus's own decode of a file through ffmpeg (`-c:a libopus`: ffmpeg's native Opus decoder
 * differs), as mono float samples at `rate`; stereo is averaged as the service does.
 */
export function ffmpegDecode(bytes: Uint8Array, rate: number, channels: 1 | 2 = 1): Float32Array {
  const out = execFileSync(
    'ffmpeg',
    [
      '-v',
      'error',
      '-c:a',
      'libopus',
      '-i',
      'pipe:0',
      ...(channels === 2 ? ['-af', 'pan=mono|c0=0.5*c0+0.5*c1'] : ['-ac', '1']),
      '-ar',
      String(rate),
      '-f',
      'f32le',
      'pipe:1',
    ],
    { input: bytes, maxBuffer: 64 << 20 },
  );
  return new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength));
}

/**
 * A WebM made like Chromium's MediaRecorder writes it: ffmpeg's live WebM (a Segment of unknown
 * size) with every Cluster's size rewritten to "unknown" (all ones, same length).
 */
export function mediaRecorderLike(liveWebm: Uint8Array): { bytes: Uint8Array; clusters: number } {
  const bytes = Uint8Array.from(liveWebm);
  let clusters = 0;
  for (let at = 0; at + 5 < bytes.length; at++) {
    if (bytes[at] !== 0x1f || bytes[at + 1] !== 0x43 || bytes[at + 2] !== 0xb6 || bytes[at + 3] !== 0x75)
      continue;
    const first = bytes[at + 4] as number;
    const length = Math.clz32(first) - 23;
    bytes[at + 4] = (0xff >> length) | (0x80 >> (length - 1));
    for (let index = 1; index < length; index++) bytes[at + 4 + index] = 0xff;
    clusters += 1;
  }
  return { bytes, clusters };
}

/** Signal-to-noise ratio of `actual` against `reference`, in dB, over their common length. */
export function snrDb(actual: Float32Array, reference: Float32Array): number {
  let signal = 0;
  let noise = 0;
  for (let index = 0; index < Math.min(actual.length, reference.length); index++) {
    const expected = reference[index] as number;
    signal += expected * expected;
    noise += (expected - (actual[index] as number)) ** 2;
  }
  return 10 * Math.log10(signal / noise);
}

/** Stream offsets of the Ogg pages of a file. */
export function oggPageOffsets(bytes: Uint8Array): number[] {
  const offsets: number[] = [];
  for (let at = 0; at + 27 <= bytes.length; ) {
    offsets.push(at);
    const segments = bytes[at + 26] as number;
    let body = 0;
    for (let index = 0; index < segments; index++) body += bytes[at + 27 + index] as number;
    at += 27 + segments + body;
  }
  return offsets;
}
