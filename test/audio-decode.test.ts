import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { Reason, VoiceError } from '../server/errors.js';
import { AudioEncoding, AudioFormatSchema } from '../server/gen/cortex/voice/v1/audio_pb.js';
import { createAudioDecoder, decodeAudio } from '../server/pipeline/audio-decode.js';
import {
  type PcmInputFormat,
  validateInputFormat,
  validateOutputFormat,
} from '../server/pipeline/audio-format.js';
import { seededRandom } from './helpers/random.js';
import { concat } from './helpers/speech.js';

const WAV: PcmInputFormat = { encoding: 'wav' };

function decodeInChunks(format: PcmInputFormat, bytes: Uint8Array, sizes: (i: number) => number) {
  const decoder = createAudioDecoder(format);
  const parts: Float32Array[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = Math.max(1, sizes(i));
    parts.push(decoder.push(bytes.subarray(at, at + size)));
    at += size;
  }
  parts.push(decoder.end());
  return { samples: concat(...parts), sampleRate: decoder.sampleRate };
}

/** Asserts that 1, 3, 7-byte and random splits decode exactly like one push. */
function assertChunkingInvariant(format: PcmInputFormat, bytes: Uint8Array): Float32Array {
  const whole = decodeAudio(format, bytes).samples;
  const next = seededRandom(bytes.length);
  const splits: [string, (i: number) => number][] = [
    ['1 byte', () => 1],
    ['3 bytes', () => 3],
    ['7 bytes', () => 7],
    ['random up to 100', () => Math.floor(next() * 100)],
    ['random up to 5000', () => Math.floor(next() * 5000)],
  ];
  for (const [name, sizes] of splits) {
    const chunked = decodeInChunks(format, bytes, sizes).samples;
    assert.deepEqual(chunked, whole, `${name} chunks differ from one push`);
  }
  return whole;
}

function expectInvalidAudio(run: () => unknown, message: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof VoiceError, `not a VoiceError: ${String(error)}`);
    assert.equal(error.reason, Reason.InvalidAudio);
    assert.match(error.rawMessage, message);
    return true;
  });
}

function le16(values: number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 2);
  const view = new DataView(bytes.buffer);
  for (const [i, v] of values.entries()) view.setInt16(i * 2, v, true);
  return bytes;
}

function le32f(values: number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  for (const [i, v] of values.entries()) view.setFloat32(i * 4, v, true);
  return bytes;
}

function riffChunk(id: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + body.length + (body.length % 2));
  out.set(new TextEncoder().encode(id));
  new DataView(out.buffer).setUint32(4, body.length, true);
  out.set(body, 8);
  return out;
}

function bytesOf(...parts: (Uint8Array | string)[]): Uint8Array {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? new TextEncoder().encode(p) : p)));
}

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
}

function fmtBody(code: number, channels: number, rate: number, bits: number): Uint8Array {
  const body = new Uint8Array(16);
  const view = new DataView(body.buffer);
  const align = (channels * bits) / 8;
  view.setUint16(0, code, true);
  view.setUint16(2, channels, true);
  view.setUint32(4, rate, true);
  view.setUint32(8, rate * align, true);
  view.setUint16(12, align, true);
  view.setUint16(14, bits, true);
  return body;
}

describe('validateInputFormat', () => {
  const format = (encoding: number, sampleRateHz: number, channels: number) =>
    create(AudioFormatSchema, { encoding, sampleRateHz, channels });

  function expectField(run: () => unknown, message: string): void {
    assert.throws(run, (error: unknown) => {
      assert.ok(error instanceof VoiceError);
      assert.equal(error.reason, Reason.InvalidArgument);
      assert.equal(error.rawMessage, message);
      return true;
    });
  }

  test('normalises raw and WAV formats', () => {
    assert.deepEqual(validateInputFormat(format(AudioEncoding.LINEAR16, 16000, 1)), {
      encoding: 'linear16',
      sampleRate: 16000,
      channels: 1,
    });
    assert.deepEqual(validateInputFormat(format(AudioEncoding.FLOAT32, 48000, 2)), {
      encoding: 'float32',
      sampleRate: 48000,
      channels: 2,
    });
    assert.deepEqual(validateInputFormat(format(AudioEncoding.WAV, 0, 0)), { encoding: 'wav' });
    assert.deepEqual(validateInputFormat(format(AudioEncoding.WAV, 8000, 2)), {
      encoding: 'wav',
      sampleRate: 8000,
      channels: 2,
    });
  });

  test('rejects each bad field with its name and the allowed values', () => {
    expectField(
      () => validateInputFormat(undefined),
      'config.audio_format: missing; set encoding (and sample_rate_hz, channels for raw PCM)',
    );
    expectField(
      () => validateInputFormat(format(AudioEncoding.UNSPECIFIED, 16000, 1)),
      'config.audio_format.encoding: missing; allowed LINEAR16, FLOAT32, WAV, MULAW, ALAW, OGG_OPUS, WEBM_OPUS',
    );
    expectField(
      () => validateInputFormat(format(99, 16000, 1)),
      'config.audio_format.encoding: 99 is not a known encoding; allowed LINEAR16, FLOAT32, WAV, MULAW, ALAW, OGG_OPUS, WEBM_OPUS',
    );
    expectField(
      () => validateInputFormat(format(AudioEncoding.LINEAR16, 0, 1)),
      'config.audio_format.sample_rate_hz: 0 is out of range; allowed 8000 to 48000',
    );
    expectField(
      () => validateInputFormat(format(AudioEncoding.FLOAT32, 96000, 1)),
      'config.audio_format.sample_rate_hz: 96000 is out of range; allowed 8000 to 48000',
    );
    expectField(
      () => validateInputFormat(format(AudioEncoding.WAV, 7999, 0)),
      'config.audio_format.sample_rate_hz: 7999 is out of range; allowed 8000 to 48000',
    );
    expectField(
      () => validateInputFormat(format(AudioEncoding.LINEAR16, 16000, 0)),
      'config.audio_format.channels: 0 is out of range; allowed 1 or 2',
    );
    expectField(
      () => validateInputFormat(format(AudioEncoding.WAV, 0, 3), 'audio_format'),
      'audio_format.channels: 3 is out of range; allowed 1 or 2',
    );
  });
});

describe('raw PCM decoding', () => {
  test('LINEAR16 maps s16le to [-1, 1) by dividing by 32768', () => {
    const { samples, sampleRate } = decodeAudio(
      { encoding: 'linear16', sampleRate: 16000, channels: 1 },
      le16([0, -32768, 32767, 16384, -1]),
    );
    assert.equal(sampleRate, 16000);
    assert.deepEqual(Array.from(samples), [0, -1, 32767 / 32768, 0.5, -1 / 32768]);
  });

  test('stereo is averaged to mono', () => {
    const { samples } = decodeAudio(
      { encoding: 'linear16', sampleRate: 16000, channels: 2 },
      le16([16384, 0, -32768, -16384, 8192, 8192]),
    );
    assert.deepEqual(Array.from(samples), [0.25, -0.75, 0.25]);
  });

  test('LINEAR16, FLOAT32 and stereo give the same samples for any chunking', () => {
    const next = seededRandom(7);
    const ints = Array.from({ length: 3001 * 2 }, () => Math.floor(next() * 65536) - 32768);
    const floats = Array.from({ length: 3001 * 2 }, () => next() * 2 - 1);
    const mono16 = assertChunkingInvariant(
      { encoding: 'linear16', sampleRate: 8000, channels: 1 },
      le16(ints),
    );
    assert.equal(mono16.length, 6002);
    const stereo16 = assertChunkingInvariant(
      { encoding: 'linear16', sampleRate: 8000, channels: 2 },
      le16(ints),
    );
    assert.equal(stereo16.length, 3001);
    const monoF = assertChunkingInvariant(
      { encoding: 'float32', sampleRate: 8000, channels: 1 },
      le32f(floats),
    );
    assert.equal(monoF[5], Math.fround(floats[5] ?? Number.NaN));
    const stereoF = assertChunkingInvariant(
      { encoding: 'float32', sampleRate: 48000, channels: 2 },
      le32f(floats),
    );
    assert.ok(
      Math.abs((stereoF[2] ?? 0) - (Math.fround(floats[4] ?? 0) + Math.fround(floats[5] ?? 0)) / 2) < 1e-7,
    );
  });

  test('FLOAT32 clamps values outside [-1, 1] and rejects NaN and infinities', () => {
    const format: PcmInputFormat = { encoding: 'float32', sampleRate: 16000, channels: 1 };
    assert.deepEqual(Array.from(decodeAudio(format, le32f([1.5, -3, 0.25])).samples), [1, -1, 0.25]);
    expectInvalidAudio(
      () => decodeAudio(format, le32f([0, 0, Number.NaN])),
      /^audio: FLOAT32 sample at data byte 8 is NaN or infinite$/,
    );
    const decoder = createAudioDecoder(format);
    decoder.push(le32f([0.5]));
    expectInvalidAudio(() => decoder.push(le32f([Number.POSITIVE_INFINITY])), /data byte 4/);
  });

  test('a stream ending inside a sample frame is INVALID_AUDIO', () => {
    const decoder = createAudioDecoder({ encoding: 'linear16', sampleRate: 16000, channels: 2 });
    assert.equal(decoder.push(new Uint8Array(10)).length, 2);
    expectInvalidAudio(
      () => decoder.end(),
      /^audio: the stream ended inside a sample frame: 2 bytes left over; LINEAR16 with 2 channel\(s\) takes 4 bytes per frame$/,
    );
  });
});

describe('WAV decoding', () => {
  let dir = '';
  const files: Record<string, Uint8Array> = {};
  /** What sox decodes each file to, as mono f32 (the reference). */
  const reference: Record<string, Float32Array> = {};

  function sox(args: string[]): void {
    execFileSync('sox', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'audio-decode-'));
    const espeak = join(dir, 'espeak.wav');
    execFileSync('espeak-ng', ['-w', espeak, 'Decoder test.']);
    const variants: Record<string, string[]> = {
      'sox-8k': ['-r', '8000'],
      'sox-44k': ['-r', '44100'],
      'sox-stereo': ['-c', '2'],
      'sox-float': ['-e', 'floating-point', '-b', '32'],
      'sox-24bit': ['-b', '24'],
      'sox-32bit': ['-e', 'signed-integer', '-b', '32'],
    };
    files.espeak = new Uint8Array(readFileSync(espeak));
    for (const [name, args] of Object.entries(variants)) {
      const path = join(dir, `${name}.wav`);
      // A little gain difference per channel so the stereo downmix is actually exercised.
      const effects = name === 'sox-stereo' ? ['remix', '1v0.9', '1v0.5'] : [];
      sox([espeak, ...args, path, ...effects]);
      files[name] = new Uint8Array(readFileSync(path));
    }
    for (const name of Object.keys(files)) {
      const raw = execFileSync('sox', ['-t', 'wav', '-', '-t', 'f32', '-c', '1', '-'], {
        input: files[name],
        stdio: ['pipe', 'pipe', 'ignore'],
      });
      reference[name] = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    }
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  test('files from espeak-ng and sox decode like sox decodes them, for any chunking', () => {
    const rates: Record<string, number> = {
      espeak: 22050,
      'sox-8k': 8000,
      'sox-44k': 44100,
      'sox-stereo': 22050,
      'sox-float': 22050,
      'sox-24bit': 22050,
      'sox-32bit': 22050,
    };
    for (const [name, bytes] of Object.entries(files)) {
      const samples = assertChunkingInvariant(WAV, bytes);
      assert.equal(decodeAudio(WAV, bytes).sampleRate, rates[name], name);
      const expected = reference[name] ?? new Float32Array(0);
      assert.equal(samples.length, expected.length, `${name}: sample count`);
      let worst = 0;
      for (let i = 0; i < samples.length; i++) {
        worst = Math.max(worst, Math.abs((samples[i] ?? 0) - (expected[i] ?? 0)));
      }
      // sox's own downmix and float conversion round a little differently.
      assert.ok(worst < 1e-4, `${name}: differs from sox by ${worst}`);
      assert.ok(
        samples.some((s) => Math.abs(s) > 0.1),
        `${name}: silent`,
      );
    }
  });

  test('the sample rate is known once the header has arrived', () => {
    const decoder = createAudioDecoder(WAV);
    const bytes = files.espeak ?? new Uint8Array(0);
    assert.equal(decoder.push(bytes.subarray(0, 43)).length, 0);
    assert.equal(decoder.sampleRate, undefined);
    decoder.push(bytes.subarray(43, 44));
    assert.equal(decoder.sampleRate, 22050);
  });

  test('a LIST chunk before the data is skipped and chunks after the declared data are ignored', () => {
    const pcm = le16([1000, -2000, 3000, -4000, 5000]);
    const list = riffChunk(
      'LIST',
      bytesOf('INFO', riffChunk('ISFT', bytesOf('cortex\0')), riffChunk('ICMT', bytesOf('odd'))),
    );
    const wav = bytesOf(
      'RIFF',
      u32(0),
      'WAVE',
      list,
      riffChunk('fmt ', fmtBody(1, 1, 16000, 16)),
      riffChunk('data', pcm),
      riffChunk('LIST', bytesOf('INFO', riffChunk('INAM', bytesOf('trailer')))),
    );
    const samples = assertChunkingInvariant(WAV, wav);
    assert.deepEqual(
      Array.from(samples),
      [1000, -2000, 3000, -4000, 5000].map((v) => v / 32768),
    );
  });

  test('a streamed WAV with data length 0xFFFFFFFF or 0 is read to the end', () => {
    const pcm = le16([100, 200, 300, 400]);
    for (const size of [0xffffffff, 0]) {
      const wav = bytesOf(
        'RIFF',
        u32(size),
        'WAVE',
        riffChunk('fmt ', fmtBody(1, 2, 48000, 16)),
        'data',
        u32(size),
        pcm,
        pcm,
      );
      const samples = assertChunkingInvariant(WAV, wav);
      assert.deepEqual(
        Array.from(samples),
        [150, 350, 150, 350].map((v) => v / 32768),
      );
    }
  });

  test('a truncated last frame of a WAV file is dropped', () => {
    const bytes = files['sox-24bit'] ?? new Uint8Array(0);
    const whole = decodeAudio(WAV, bytes).samples;
    const dataStart = Buffer.from(bytes).indexOf('data') + 8;
    const cut = decodeAudio(WAV, bytes.subarray(0, dataStart + 3 * 1000 + 2)).samples;
    assert.deepEqual(cut, whole.subarray(0, 1000));
  });

  test('a rate or channel count set in the request must match the header', () => {
    const bytes = files.espeak ?? new Uint8Array(0);
    assert.equal(decodeAudio({ encoding: 'wav', sampleRate: 22050, channels: 1 }, bytes).sampleRate, 22050);
    assert.throws(
      () => decodeAudio({ encoding: 'wav', sampleRate: 16000 }, bytes),
      (error: unknown) =>
        error instanceof VoiceError &&
        error.reason === Reason.InvalidArgument &&
        error.rawMessage ===
          "config.audio_format.sample_rate_hz: 16000 does not match the WAV header's 22050; set 0 to use the header's",
    );
    assert.throws(
      () => decodeAudio({ encoding: 'wav', channels: 2 }, bytes),
      /config\.audio_format\.channels: 2 does not match the WAV header's 1/,
    );
  });

  test('broken or unsupported headers are INVALID_AUDIO with a precise message', () => {
    const fmt = riffChunk('fmt ', fmtBody(1, 1, 16000, 16));
    const data = riffChunk('data', le16([1, 2]));
    const wav = (...chunks: Uint8Array[]) => bytesOf('RIFF', u32(0), 'WAVE', ...chunks);
    const cases: [string, Uint8Array, RegExp][] = [
      [
        'not RIFF',
        bytesOf('OggS', new Uint8Array(40)),
        /^audio: not a WAV stream: it starts with "OggS", expected "RIFF"$/,
      ],
      [
        'not WAVE',
        bytesOf('RIFF', u32(0), 'AVI ', fmt, data),
        /^audio: not a WAV stream: the RIFF form is "AVI ", expected "WAVE"$/,
      ],
      ['RIFX', bytesOf('RIFX', u32(0), 'WAVE', fmt, data), /^audio: big-endian RIFX WAV is not supported/],
      ['no fmt', wav(data), /^audio: WAV header has no 'fmt ' chunk before the 'data' chunk$/],
      [
        'short fmt',
        wav(riffChunk('fmt ', new Uint8Array(14)), data),
        /^audio: WAV 'fmt ' chunk is 14 bytes; expected at least 16$/,
      ],
      [
        'A-law',
        wav(riffChunk('fmt ', fmtBody(6, 1, 8000, 8)), data),
        /^audio: WAV audio format 6 \(A-law\) is not supported; allowed PCM \(1\), IEEE float \(3\)/,
      ],
      [
        '8-bit',
        wav(riffChunk('fmt ', fmtBody(1, 1, 8000, 8)), data),
        /^audio: WAV 8-bit integer samples are not supported; allowed 16, 24 or 32-bit integer or 32-bit float$/,
      ],
      [
        '64-bit float',
        wav(riffChunk('fmt ', fmtBody(3, 1, 8000, 64)), data),
        /^audio: WAV 64-bit float samples are not supported/,
      ],
      [
        '96 kHz',
        wav(riffChunk('fmt ', fmtBody(1, 1, 96000, 16)), data),
        /^audio: WAV sample rate 96000 Hz is out of range; allowed 8000 to 48000$/,
      ],
      [
        '6 channels',
        wav(riffChunk('fmt ', fmtBody(1, 6, 16000, 16)), data),
        /^audio: WAV header has 6 channels; allowed 1 or 2$/,
      ],
      [
        'header over 64 KiB',
        wav(fmt, riffChunk('JUNK', new Uint8Array(70_000)), data),
        /^audio: WAV header has no 'data' chunk within the first 65536 bytes$/,
      ],
      [
        'ends in the header',
        wav(fmt).subarray(0, 30),
        /^audio: WAV header incomplete: the stream ended after 30 bytes, before the 'data' chunk$/,
      ],
    ];
    for (const [name, bytes, message] of cases) {
      for (const size of [1, 7, bytes.length]) {
        expectInvalidAudio(() => decodeInChunks(WAV, bytes, () => size), message);
      }
      assert.ok(name);
    }
  });

  test('a header over the limit fails before the whole header has arrived', () => {
    const decoder = createAudioDecoder(WAV, { maxHeaderBytes: 1024 });
    const head = bytesOf('RIFF', u32(0), 'WAVE', 'JUNK', u32(1_000_000));
    expectInvalidAudio(() => decoder.push(head), /within the first 1024 bytes/);
  });

  test('WAVE_FORMAT_EXTENSIBLE with a float sub-format decodes as float', () => {
    const ext = new Uint8Array(40);
    ext.set(fmtBody(0xfffe, 1, 16000, 32));
    const view = new DataView(ext.buffer);
    view.setUint16(16, 22, true); // cbSize
    view.setUint16(18, 32, true); // valid bits
    view.setUint32(20, 4, true); // channel mask
    // KSDATAFORMAT_SUBTYPE_IEEE_FLOAT: 00000003-0000-0010-8000-00aa00389b71
    ext.set([3, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71], 24);
    const wav = bytesOf(
      'RIFF',
      u32(0),
      'WAVE',
      riffChunk('fmt ', ext),
      riffChunk('data', le32f([0.25, -0.5])),
    );
    assert.deepEqual(Array.from(assertChunkingInvariant(WAV, wav)), [0.25, -0.5]);
  });

  test('an empty WAV stream decodes to nothing; decodeAudio of nothing is INVALID_AUDIO', () => {
    const decoder = createAudioDecoder(WAV);
    assert.equal(decoder.end().length, 0);
    expectInvalidAudio(
      () => decodeAudio(WAV, new Uint8Array(0)),
      /^audio: the audio is empty: no WAV header$/,
    );
  });
});

describe('G.711 μ-law and A-law (telephony)', () => {
  const formats = {
    mulaw: { sox: 'ul', encoding: AudioEncoding.MULAW },
    alaw: { sox: 'al', encoding: AudioEncoding.ALAW },
  } as const;
  let dir = '';
  let speech = new Uint8Array(0);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'audio-decode-g711-'));
    const espeak = join(dir, 'espeak.wav');
    execFileSync('espeak-ng', ['-w', espeak, 'Your call is important to us.']);
    speech = new Uint8Array(readFileSync(espeak));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** What sox makes of `bytes` in `type` (ul, al): 16-bit linear samples. */
  function soxDecode(type: string, bytes: Uint8Array, channels = 1): Int16Array {
    const raw = execFileSync(
      'sox',
      ['-t', type, '-r', '8000', '-c', String(channels), '-', '-t', 's16', '-c', String(channels), '-'],
      { input: bytes, stdio: ['pipe', 'pipe', 'ignore'] },
    );
    return new Int16Array(Uint8Array.from(raw).buffer);
  }

  for (const [name, { sox, encoding }] of Object.entries(formats)) {
    test(`${name}: every one of the 256 codes expands to sox's 16-bit value`, () => {
      const codes = Uint8Array.from({ length: 256 }, (_, code) => code);
      const decoded = decodeAudio(
        { encoding: name as 'mulaw', sampleRate: 8000, channels: 1 },
        codes,
      ).samples;
      const reference = soxDecode(sox, codes);
      assert.deepEqual(
        Array.from(decoded, (value) => Math.round(value * 0x8000)),
        Array.from(reference),
      );
    });

    test(`${name}: 8 kHz speech encoded by sox decodes as sox decodes it, for any chunking, mono or stereo`, () => {
      const encoded = execFileSync('sox', ['-t', 'wav', '-', '-r', '8000', '-t', sox, '-'], {
        input: speech,
        stdio: ['pipe', 'pipe', 'ignore'],
      });
      const bytes = Uint8Array.from(encoded);
      const format: PcmInputFormat = { encoding: name as 'mulaw', sampleRate: 8000, channels: 1 };
      const samples = assertChunkingInvariant(format, bytes);
      assert.equal(samples.length, bytes.length);
      assert.deepEqual(
        Array.from(samples, (value) => Math.round(value * 0x8000)),
        Array.from(soxDecode(sox, bytes)),
      );
      const stereo = new Uint8Array(bytes.length * 2);
      for (let i = 0; i < bytes.length; i++) {
        stereo[2 * i] = bytes[i] ?? 0;
        stereo[2 * i + 1] = bytes[i] ?? 0;
      }
      assert.deepEqual(assertChunkingInvariant({ ...format, channels: 2 }, stereo), samples);
    });

    test(`${name}: accepted for input with its rate and channels, refused for output naming the field`, () => {
      const input = validateInputFormat(
        create(AudioFormatSchema, { encoding, sampleRateHz: 8000, channels: 1 }),
      );
      assert.deepEqual(input, { encoding: name, sampleRate: 8000, channels: 1 });
      assert.throws(
        () => validateInputFormat(create(AudioFormatSchema, { encoding, channels: 1 })),
        /config\.audio_format\.sample_rate_hz: 0 is out of range; allowed 8000 to 48000/,
      );
      assert.throws(
        () => validateOutputFormat(encoding, 8000),
        /^ConnectError: \[invalid_argument\] config\.encoding: (MULAW|ALAW) is accepted for input only; allowed LINEAR16, FLOAT32, WAV$/,
      );
    });
  }
});
