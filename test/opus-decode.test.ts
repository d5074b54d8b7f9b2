import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, mock, test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { Reason, VoiceError } from '../server/errors.js';
import { AudioEncoding, AudioFormatSchema } from '../server/gen/cortex/voice/v1/audio_pb.js';
import { validateInputFormat, validateOutputFormat } from '../server/pipeline/audio-format.js';
import { oggCrc } from '../server/pipeline/ogg-pages.js';
import { createOpusStreamDecoder } from '../server/pipeline/opus-decode.js';
import type { OpusRate } from '../server/pipeline/opus-packets.js';
import { resolveResumePoint } from '../server/service/resume-point.js';
import { ffmpegDecode, ffmpegEncode, mediaRecorderLike, oggPageOffsets, snrDb } from './helpers/opus.js';
import { seededRandom } from './helpers/random.js';
import { concat } from './helpers/speech.js';

type Container = 'ogg' | 'webm';

/** Decodes `bytes` pushed in chunks of `sizes(i)` bytes; the error, if any, with what came before. */
async function decode(container: Container, bytes: Uint8Array, rate: OpusRate, sizes: (i: number) => number) {
  const decoder = createOpusStreamDecoder({ container, sampleRate: rate });
  const parts: Float32Array[] = [];
  try {
    for (let at = 0, i = 0; at < bytes.length; i++) {
      const size = Math.max(1, sizes(i));
      parts.push(await decoder.push(bytes.subarray(at, at + size)));
      at += size;
    }
    parts.push(await decoder.end());
    return { samples: concat(...parts), error: undefined };
  } catch (error) {
    return { samples: concat(...parts), error };
  } finally {
    decoder.close();
  }
}

const SPLITS: Array<[string, (next: () => number) => (i: number) => number]> = [
  ['1-byte chunks', () => () => 1],
  ['random chunks of 1 to 600 bytes', (next) => () => 1 + Math.floor(next() * 600)],
  ['one chunk', () => () => 1 << 30],
];

async function expectInvalidAudio(container: Container, bytes: Uint8Array, message: RegExp, offset: number) {
  for (const size of [1, 333, bytes.length]) {
    const { error } = await decode(container, bytes, 16000, () => size);
    assert.ok(error instanceof VoiceError, `chunks of ${size}: ${String(error)}`);
    assert.equal(error.reason, Reason.InvalidAudio);
    assert.match(error.rawMessage, message, `chunks of ${size}`);
    assert.equal(error.info.byte_offset, String(offset), `chunks of ${size}: ${error.rawMessage}`);
  }
}

describe('Ogg Opus and WebM Opus decoding', () => {
  let dir: string;
  let wav: Uint8Array;
  const files: Record<string, Uint8Array> = {};

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'voice-opus-'));
    execFileSync('espeak-ng', [
      '-v',
      'en-us',
      '-w',
      join(dir, 'speech.wav'),
      'Hello world, this is a test of compressed audio. The quick brown fox jumps over the lazy dog.',
    ]);
    wav = new Uint8Array(readFileSync(join(dir, 'speech.wav')));
    files.ogg = ffmpegEncode(wav, 'ogg');
    files.webm = ffmpegEncode(wav, 'webm');
    files.live = ffmpegEncode(wav, 'webm', ['-live', '1']);
    files.stereo = ffmpegEncode(wav, 'ogg', ['-ac', '2', '-b:a', '64k']);
    files.frames60 = ffmpegEncode(wav, 'ogg', ['-frame_duration', '60']);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const cases: Array<[string, string, Container]> = [
    ['Ogg Opus', 'ogg', 'ogg'],
    ['WebM Opus with sized Clusters and a last BlockGroup with DiscardPadding', 'webm', 'webm'],
    ['stereo Ogg Opus, averaged to mono', 'stereo', 'ogg'],
    ['Ogg Opus of 60 ms frames', 'frames60', 'ogg'],
  ];
  for (const [name, file, container] of cases) {
    test(`${name}: the samples libopus gives ffmpeg, however the bytes are split`, async () => {
      const bytes = files[file] as Uint8Array;
      if (file === 'webm') {
        const text = Buffer.from(bytes);
        assert.ok(
          text.includes(Buffer.from([0xa0])) && text.includes(Buffer.from([0x75, 0xa2])),
          'has DiscardPadding',
        );
      }
      const channels = file === 'stereo' ? 2 : 1;
      const reference = ffmpegDecode(bytes, 48000, channels);
      for (const [split, sizes] of SPLITS) {
        const { samples, error } = await decode(container, bytes, 48000, sizes(seededRandom(bytes.length)));
        assert.equal(error, undefined);
        assert.equal(samples.length, reference.length, `${split}: sample count`);
        const snr = snrDb(samples, reference);
        assert.ok(snr > 60, `${split}: SNR ${snr.toFixed(1)} dB against ffmpeg -c:a libopus`);
      }
      // At 16 kHz, libopus decodes to the rate itself: as many samples as ffmpeg's resampled 48 kHz.
      const { samples } = await decode(container, bytes, 16000, () => 777);
      assert.equal(samples.length, ffmpegDecode(bytes, 16000, channels).length, '16 kHz sample count');
    });
  }

  test('a WebM as Chromium MediaRecorder writes it (Segment and Clusters of unknown size) decodes the same', async () => {
    const { bytes, clusters } = mediaRecorderLike(files.live as Uint8Array);
    assert.ok(clusters > 2, `${clusters} clusters`);
    const reference = await decode('webm', files.webm as Uint8Array, 16000, () => 1 << 30);
    for (const [split, sizes] of SPLITS) {
      const { samples, error } = await decode('webm', bytes, 16000, sizes(seededRandom(7)));
      assert.equal(error, undefined, split);
      assert.ok(
        Math.abs(samples.length - reference.samples.length) <= 1,
        `${split}: ${samples.length} samples`,
      );
      assert.ok(snrDb(samples, reference.samples) > 60, split);
    }
  });

  test('bytes that are not the declared container are INVALID_AUDIO at byte 0', async () => {
    const garbage = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7919) & 0xff);
    await expectInvalidAudio(
      'ogg',
      garbage,
      /^audio: not an Ogg stream, .*OGG_OPUS.*starts with 00 EF DE CD/,
      0,
    );
    await expectInvalidAudio(
      'ogg',
      wav,
      /^audio: not an Ogg stream, .*starts with "RIFF", expected "OggS"$/,
      0,
    );
    await expectInvalidAudio('ogg', files.webm as Uint8Array, /starts with 1A 45 DF A3, expected "OggS"/, 0);
    await expectInvalidAudio(
      'webm',
      files.ogg as Uint8Array,
      /^audio: not a WebM stream, .*WEBM_OPUS.*"OggS"/,
      0,
    );
    await expectInvalidAudio('webm', garbage, /^audio: not a WebM stream/, 0);
  });

  test('a corrupt, missing or truncated Ogg page is INVALID_AUDIO naming its byte offset', async () => {
    const ogg = files.ogg as Uint8Array;
    const pages = oggPageOffsets(ogg);
    const page = pages[5] as number;
    const flipped = Uint8Array.from(ogg);
    flipped[page + 40] = (flipped[page + 40] as number) ^ 0x10;
    await expectInvalidAudio(
      'ogg',
      flipped,
      new RegExp(`^audio: Ogg page at byte ${page} fails its CRC check`),
      page,
    );

    const missing = concat8(ogg.subarray(0, page), ogg.subarray(pages[6] as number));
    await expectInvalidAudio('ogg', missing, /has sequence number 6 after 4: a page is missing$/, page);

    const last = pages.at(-1) as number;
    const cut = ogg.subarray(0, last + 30);
    await expectInvalidAudio(
      'ogg',
      cut,
      new RegExp(`ended inside an Ogg page: 30 bytes left at byte ${last}$`),
      last,
    );
    // Everything before the cut page was decoded and handed out before the error.
    const { samples } = await decode('ogg', cut, 16000, () => 512);
    assert.ok(
      samples.length > ffmpegDecode(ogg, 16000).length - 16000,
      `${samples.length} samples before the cut`,
    );
  });

  test('a corrupt Opus packet is INVALID_AUDIO at its byte, and libopus writes nothing to stderr', async () => {
    const ogg = Uint8Array.from(files.ogg as Uint8Array);
    const page = oggPageOffsets(ogg)[3] as number;
    const packet = page + 27 + (ogg[page + 26] as number);
    // A code 3 packet of 0 frames (RFC 6716 R5), the CRC made right so that only the packet is wrong.
    ogg[packet] = (ogg[packet] as number) | 3;
    ogg[packet + 1] = 0;
    new DataView(ogg.buffer).setUint32(page + 22, 0, true);
    const pageEnd = oggPageOffsets(ogg)[4] as number;
    new DataView(ogg.buffer).setUint32(page + 22, oggCrc(ogg.subarray(page, pageEnd)), true);
    const stderr = mock.method(console, 'error', () => {});
    try {
      await expectInvalidAudio(
        'ogg',
        ogg,
        new RegExp(`^audio: corrupt Opus packet at byte ${packet}: a code 3 packet of 0 frames$`),
        packet,
      );
      assert.equal(stderr.mock.callCount(), 0);
    } finally {
      stderr.mock.restore();
    }
  });

  test('a truncated WebM or one without an Opus track is INVALID_AUDIO naming the byte offset', async () => {
    const webm = files.webm as Uint8Array;
    await expectInvalidAudio(
      'webm',
      webm.subarray(0, 15000),
      /^audio: the stream ended at byte 15000, inside the SimpleBlock element that starts at byte \d+: its last \d+ bytes are missing$/,
      15000,
    );
    const vorbis = Uint8Array.from(
      execFileSync('ffmpeg', ['-v', 'error', '-i', 'pipe:0', '-c:a', 'libvorbis', '-f', 'webm', 'pipe:1'], {
        input: wav,
      }),
    );
    const { error } = await decode('webm', vorbis, 16000, () => 100);
    assert.ok(error instanceof VoiceError);
    assert.match(error.rawMessage, /^audio: WebM without an Opus audio track \(tracks: A_VORBIS\)$/);
    assert.match(error.info.byte_offset ?? '', /^\d+$/);
  });

  test('OpusHead decides the channels: a declared count must agree', async () => {
    const decoder = createOpusStreamDecoder({ container: 'ogg', sampleRate: 16000, channels: 2 });
    await assert.rejects(decoder.push(files.ogg as Uint8Array), (error: unknown) => {
      assert.ok(error instanceof VoiceError);
      assert.equal(error.reason, Reason.InvalidArgument);
      assert.match(
        error.rawMessage,
        /^config\.audio_format\.channels: 2 does not match the stream's OpusHead, which has 1; set 0/,
      );
      return true;
    });
    decoder.close();
  });

  test('the formats: input only, no sample rate, channels optional, not resumable', () => {
    for (const [encoding, name] of [
      [AudioEncoding.OGG_OPUS, 'ogg-opus'],
      [AudioEncoding.WEBM_OPUS, 'webm-opus'],
    ] as const) {
      assert.deepEqual(validateInputFormat(create(AudioFormatSchema, { encoding })), { encoding: name });
      assert.deepEqual(validateInputFormat(create(AudioFormatSchema, { encoding, channels: 2 })), {
        encoding: name,
        channels: 2,
      });
      assert.throws(
        () => validateInputFormat(create(AudioFormatSchema, { encoding, sampleRateHz: 48000 })),
        /^ConnectError: \[invalid_argument\] config\.audio_format\.sample_rate_hz: 48000 is not allowed with (OGG|WEBM)_OPUS; set 0/,
      );
      assert.throws(
        () => validateOutputFormat(encoding, 0),
        /config\.encoding: (OGG|WEBM)_OPUS is accepted for input only; allowed LINEAR16, FLOAT32, WAV$/,
      );
      assert.throws(
        () => resolveResumePoint({ offsetMs: 1000n, nextUtteranceIndex: 1 } as never, { encoding: name }),
        /^ConnectError: \[invalid_argument\] config\.resume: requires raw PCM: an (Ogg|WebM) Opus stream cannot be continued/,
      );
    }
  });
});

function concat8(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}
