import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  AudioEncoding,
  Code,
  errorInfoOf,
  ServingStatus,
  TimestampGranularity,
  type TranscribeResponse,
  type TranscriptionConfigSchema,
  type TranscriptResult,
} from '../clients/node/index.js';
import { createAudioEncoder } from '../server/pipeline/audio-encode.js';
import { expectError } from './helpers/errors.js';
import { testModels } from './helpers/models.js';
import { ffmpegEncode, mediaRecorderLike, oggPageOffsets } from './helpers/opus.js';
import { concat, RATE, silence, speak, speechBounds, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines, startTestServer, type TestServer } from './helpers/test-server.js';

type ConfigInit = MessageInitShape<typeof TranscriptionConfigSchema>;
type RequestInit = {
  request: { case: 'config'; value: ConfigInit } | { case: 'audio'; value: Uint8Array } | { case: undefined };
};

/** What the generated test model says for any speech. */
const WHISPER_TEXT = 'hello world';
const LINEAR16_16K = { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 };

/** Requests for a clip: the config, then the audio in chunks of `chunkMs`, optionally paced. */
async function* clipRequests(
  config: ConfigInit,
  audio: Uint8Array,
  options: { chunkBytes?: number; paceMs?: number } = {},
): AsyncGenerator<RequestInit> {
  yield { request: { case: 'config', value: config } };
  const chunkBytes = options.chunkBytes ?? 3200;
  for (let offset = 0; offset < audio.length; offset += chunkBytes) {
    yield { request: { case: 'audio', value: audio.subarray(offset, offset + chunkBytes) } };
    if (options.paceMs) await sleep(options.paceMs);
  }
}

async function collect(stream: AsyncIterable<TranscribeResponse>): Promise<TranscribeResponse[]> {
  const responses: TranscribeResponse[] = [];
  for await (const response of stream) responses.push(response);
  return responses;
}

const finals = (responses: TranscribeResponse[]) =>
  responses.flatMap((response) =>
    response.event.case === 'result' && response.event.value.isFinal ? [response.event.value] : [],
  );

describe('Transcribe', () => {
  let t: TestServer;
  let sentences: Float32Array[];
  let clip: Float32Array;
  let truth: Array<{ startMs: number; endMs: number }>;
  const gaps = [1.0, 1.5];

  before(async () => {
    t = await startServerWithEngines({ performance: { max_audio_chunk_bytes: 256 * 1024, workers: 2 } });
    sentences = [
      speak('The weather is lovely today.'),
      speak('Please send me the report by Friday.'),
      speak('Thank you, and see you soon.'),
    ];
    const lead = silence(0.5);
    clip = concat(
      lead,
      sentences[0]!,
      silence(gaps[0]!),
      sentences[1]!,
      silence(gaps[1]!),
      sentences[2]!,
      silence(1),
    );
    let offset = lead.length;
    truth = sentences.map((sentence, index) => {
      const bounds = speechBounds(sentence);
      const startMs = (offset / RATE) * 1000;
      offset += sentence.length + (gaps[index] ?? 0) * RATE;
      return { startMs: startMs + bounds.startMs, endMs: startMs + bounds.endMs };
    });
  });
  after(() => t.stop());

  it('reports SERVING once VAD and recognition are loaded', async () => {
    const status = await t.client.health.check({ service: 'cortex.voice.v1.Transcription' });
    assert.equal(status.status, ServingStatus.SERVING);
  });

  it('gives one final per utterance with offsets on the stream timeline', async () => {
    const config = { audioFormat: LINEAR16_16K, language: 'en', endpointing: { speechPadMs: 0 } };
    const responses = await collect(
      t.client.transcription.transcribe(clipRequests(config, toLinear16(clip))),
    );
    const results = finals(responses);
    assert.equal(results.length, 3);
    results.forEach((result, index) => {
      assert.equal(result.text, WHISPER_TEXT);
      assert.equal(result.utteranceIndex, index);
      assert.equal(result.language, 'en');
      const expected = truth[index]!;
      assert.ok(
        Math.abs(result.startMs - expected.startMs) <= 250,
        `start ${result.startMs} vs ${expected.startMs}`,
      );
      assert.ok(Math.abs(result.endMs - expected.endMs) <= 250, `end ${result.endMs} vs ${expected.endMs}`);
    });
    const events = responses.map((response) => `${response.event.case}:${utteranceOf(response)}`);
    for (let index = 0; index < 3; index += 1) {
      const started = events.indexOf(`speechStarted:${index}`);
      const ended = events.indexOf(`speechEnded:${index}`);
      const final = events.indexOf(`result:${index}`);
      assert.ok(
        started >= 0 && started < ended && ended < final,
        `event order of utterance ${index}: ${events.join(' ')}`,
      );
    }
  });

  it('accepts WAV, stereo and other rates, in chunks that split samples', async () => {
    const encoder = createAudioEncoder({ encoding: 'wav', sampleRate: RATE });
    const wav = encoder.encode(concat(silence(0.3), sentences[0]!, silence(1)));
    const responses = await collect(
      t.client.transcription.transcribe(
        clipRequests({ audioFormat: { encoding: AudioEncoding.WAV } }, wav, { chunkBytes: 333 }),
      ),
    );
    assert.equal(finals(responses).length, 1);

    const stereo48k = upsampleToStereo48k(concat(silence(0.3), sentences[1]!, silence(1)));
    const stereo = await collect(
      t.client.transcription.transcribe(
        clipRequests(
          { audioFormat: { encoding: AudioEncoding.FLOAT32, sampleRateHz: 48_000, channels: 2 } },
          stereo48k,
          {
            chunkBytes: 4099,
          },
        ),
      ),
    );
    const result = finals(stereo);
    assert.equal(result.length, 1);
    const bounds = speechBounds(sentences[1]!);
    assert.ok(
      Math.abs(result[0]!.startMs - (300 + bounds.startMs)) <= 250 + 200,
      `start ${result[0]!.startMs}`,
    );
  });

  it('sends interim results while an utterance grows, never after its final', async () => {
    const long = concat(silence(0.3), sentences[0]!, sentences[1]!, sentences[2]!);
    const split = Math.round(0.3 * RATE + long.length * 0.6);
    const responses: TranscribeResponse[] = [];
    let sawInterim!: () => void;
    const interimSeen = new Promise<void>((resolve) => {
      sawInterim = resolve;
    });
    async function* requests(): AsyncGenerator<RequestInit> {
      yield {
        request: {
          case: 'config',
          value: { audioFormat: LINEAR16_16K, interimResults: true, interimIntervalMs: 500 },
        },
      };
      yield* chunks(toLinear16(long.subarray(0, split)));
      // Speech is still going on: the interim must arrive without any more audio.
      await Promise.race([interimSeen, sleep(10_000)]);
      yield* chunks(toLinear16(concat(long.subarray(split), silence(1))));
    }
    for await (const response of t.client.transcription.transcribe(requests())) {
      responses.push(response);
      if (response.event.case === 'result' && !response.event.value.isFinal) sawInterim();
    }
    const results = responses.flatMap((response) =>
      response.event.case === 'result' ? [response.event.value] : [],
    );
    const firstFinal = results.findIndex((result) => result.isFinal);
    assert.ok(firstFinal > 0, 'at least one interim came before the final');
    assert.ok(results.slice(0, firstFinal).every((result) => !result.isFinal && result.utteranceIndex === 0));
    assert.ok(
      results.slice(firstFinal + 1).every((result) => result.isFinal || result.utteranceIndex > 0),
      'no interim after the final',
    );
    assert.equal(finals(responses).length, 1);
  });

  it('flushes the pending utterance on half-close and ends with OK', async () => {
    const speechOnly = concat(silence(0.3), sentences[0]!);
    const responses = await collect(
      t.client.transcription.transcribe(clipRequests({ audioFormat: LINEAR16_16K }, toLinear16(speechOnly))),
    );
    const results = finals(responses);
    assert.equal(results.length, 1);
    assert.ok(results[0]!.endMs >= (speechOnly.length / RATE) * 1000 - 250);
  });

  it('returns segment and word times on the stream timeline when asked', async () => {
    const audio = concat(silence(1), sentences[0]!, silence(1));
    const [result] = finals(
      await collect(
        t.client.transcription.transcribe(
          clipRequests(
            { audioFormat: LINEAR16_16K, language: 'en', timestamps: TimestampGranularity.WORD },
            toLinear16(audio),
          ),
        ),
      ),
    );
    assert.ok(result);
    assert.ok(result.words.length > 0, 'words are returned');
    assert.ok(
      result.words.every((word) => word.startMs >= result.startMs && word.endMs <= result.startMs + 30_000),
    );
    assert.deepEqual(
      result.words.map((word) => word.startMs),
      [...result.words.map((word) => word.startMs)].sort((a, b) => a - b),
    );
  });

  it('serves 20 concurrent streams, each getting all of its finals', async () => {
    const audio = toLinear16(concat(silence(0.3), sentences[0]!, silence(0.8), sentences[2]!, silence(0.8)));
    const streams = Array.from({ length: 20 }, () =>
      collect(
        t.client.transcription.transcribe(
          clipRequests({ audioFormat: LINEAR16_16K }, audio, { chunkBytes: 6400 }),
        ),
      ),
    );
    const all = await Promise.all(streams);
    for (const responses of all) {
      assert.deepEqual(
        finals(responses).map((result) => result.utteranceIndex),
        [0, 1],
      );
    }
  });

  it('stops the work of a cancelled stream and frees the worker', async () => {
    const controller = new AbortController();
    const audio = toLinear16(clip);
    const error = await expectError(async () => {
      for await (const response of t.client.transcription.transcribe(
        clipRequests({ audioFormat: LINEAR16_16K }, audio, { paceMs: 5 }),
        {
          signal: controller.signal,
        },
      )) {
        if (response.event.case === 'speechStarted') controller.abort();
      }
    });
    assert.equal(error.code, Code.Canceled);
    await waitFor(
      async () =>
        (await metric(t, 'voice_active_streams{grpc_service="cortex.voice.v1.Transcription"')) === 0,
    );
    await waitFor(async () => (await metric(t, 'voice_worker_queue_depth')) === 0);
  });

  it('ends with DEADLINE_EXCEEDED when the deadline passes mid-stream', async () => {
    const error = await expectError(() =>
      collect(
        t.client.transcription.transcribe(
          clipRequests({ audioFormat: LINEAR16_16K }, toLinear16(clip), { paceMs: 50 }),
          {
            timeoutMs: 400,
          },
        ),
      ),
    );
    assert.equal(error.code, Code.DeadlineExceeded);
  });

  it('counts the audio it analyses in voice_audio_seconds_total', async () => {
    const before = await metric(t, 'voice_audio_seconds_total{direction="in"}');
    await collect(
      t.client.transcription.transcribe(clipRequests({ audioFormat: LINEAR16_16K }, toLinear16(clip))),
    );
    const added = (await metric(t, 'voice_audio_seconds_total{direction="in"}')) - before;
    const seconds = clip.length / RATE;
    assert.ok(Math.abs(added - seconds) < 0.1, `counted ${added} s of a ${seconds} s clip`);
  });

  it('transcribes a whole clip in one unary call', async () => {
    const encoder = createAudioEncoder({ encoding: 'wav', sampleRate: RATE });
    const response = await t.client.transcription.transcribeFile({
      config: { audioFormat: { encoding: AudioEncoding.WAV } },
      audio: encoder.encode(clip),
    });
    assert.equal(response.results.length, 3);
    assert.ok(response.results.every((result) => result.isFinal));
    assert.ok(
      Math.abs(response.durationMs - (clip.length / RATE) * 1000) < 100,
      `duration ${response.durationMs}`,
    );
  });

  it('transcribes 8 kHz μ-law and A-law made by sox into the utterances of the LINEAR16 original', async () => {
    const wav = createAudioEncoder({ encoding: 'wav', sampleRate: RATE }).encode(clip);
    const telephony = (type: string) =>
      Uint8Array.from(
        execFileSync('sox', ['-t', 'wav', '-', '-r', '8000', '-t', type, '-'], {
          input: wav,
          stdio: ['pipe', 'pipe', 'ignore'],
        }),
      );
    const transcribeAs = async (encoding: AudioEncoding, audio: Uint8Array) =>
      (
        await t.client.transcription.transcribeFile({
          config: { audioFormat: { encoding, sampleRateHz: 8000, channels: 1 } },
          audio,
        })
      ).results.map((r) => ({ index: r.utteranceIndex, startMs: r.startMs, endMs: r.endMs, text: r.text }));
    const original = await transcribeAs(AudioEncoding.LINEAR16, telephony('s16'));
    assert.equal(original.length, 3, "the 8 kHz original has the clip's three utterances");
    for (const [encoding, type] of [
      [AudioEncoding.MULAW, 'ul'],
      [AudioEncoding.ALAW, 'al'],
    ] as const) {
      const results = await transcribeAs(encoding, telephony(type));
      assert.deepEqual(
        results.map((r) => [r.index, r.text]),
        original.map((r) => [r.index, r.text]),
        AudioEncoding[encoding],
      );
      for (const [i, result] of results.entries()) {
        const reference = original[i]!;
        assert.ok(
          Math.abs(result.startMs - reference.startMs) <= 64 &&
            Math.abs(result.endMs - reference.endMs) <= 64,
          `${AudioEncoding[encoding]} utterance ${i}: ${result.startMs}–${result.endMs} ms vs ${reference.startMs}–${reference.endMs} ms`,
        );
      }
    }
  });

  it('transcribes Ogg Opus and MediaRecorder-like WebM Opus made by ffmpeg, through TranscribeFile and Transcribe, into the utterances of the LINEAR16 original', async () => {
    const wav = createAudioEncoder({ encoding: 'wav', sampleRate: RATE }).encode(clip);
    const summary = (results: TranscriptResult[]) =>
      results.map((r) => ({ index: r.utteranceIndex, startMs: r.startMs, endMs: r.endMs, text: r.text }));
    const original = summary(
      (
        await t.client.transcription.transcribeFile({
          config: { audioFormat: LINEAR16_16K },
          audio: toLinear16(clip),
        })
      ).results,
    );
    assert.equal(original.length, 3, "the original has the clip's three utterances");
    const opus = [
      ['OGG_OPUS', AudioEncoding.OGG_OPUS, ffmpegEncode(wav, 'ogg')],
      [
        'WEBM_OPUS',
        AudioEncoding.WEBM_OPUS,
        mediaRecorderLike(ffmpegEncode(wav, 'webm', ['-live', '1'])).bytes,
      ],
    ] as const;
    for (const [name, encoding, bytes] of opus) {
      const file = summary(
        (await t.client.transcription.transcribeFile({ config: { audioFormat: { encoding } }, audio: bytes }))
          .results,
      );
      const streamed = summary(
        finals(
          await collect(
            t.client.transcription.transcribe(
              clipRequests({ audioFormat: { encoding } }, bytes, { chunkBytes: 777 }),
            ),
          ),
        ),
      );
      for (const [how, results] of [
        ['TranscribeFile', file],
        ['Transcribe', streamed],
      ] as const) {
        assert.deepEqual(
          results.map((r) => [r.index, r.text]),
          original.map((r) => [r.index, r.text]),
          `${name} through ${how}`,
        );
        for (const [i, result] of results.entries()) {
          const reference = original[i]!;
          // Four 32 ms VAD frames: an utterance's end once came out 96 ms off the original's (1 run
          // in 7; the decoded Opus samples are the same every run).
          assert.ok(
            Math.abs(result.startMs - reference.startMs) <= 128 &&
              Math.abs(result.endMs - reference.endMs) <= 128,
            `${name} through ${how}, utterance ${i}: ${result.startMs}–${result.endMs} ms vs ${reference.startMs}–${reference.endMs} ms`,
          );
        }
      }
    }
  });

  it('a truncated Ogg Opus stream: finals for all the speech before the cut, then INVALID_ARGUMENT naming the byte offset', async () => {
    const wav = createAudioEncoder({ encoding: 'wav', sampleRate: RATE }).encode(clip);
    const ogg = ffmpegEncode(wav, 'ogg', ['-page_duration', '100000']);
    // Cut 10 bytes into the page after the first one that ends past the middle of the third sentence.
    const middle = ((truth[2]!.startMs + truth[2]!.endMs) / 2000) * 48_000;
    const view = new DataView(ogg.buffer, ogg.byteOffset);
    const pages = oggPageOffsets(ogg);
    const page = pages[pages.findIndex((at) => Number(view.getBigUint64(at + 6, true)) > middle) + 1]!;
    const responses: TranscribeResponse[] = [];
    const error = await expectError(async () => {
      for await (const response of t.client.transcription.transcribe(
        clipRequests({ audioFormat: { encoding: AudioEncoding.OGG_OPUS } }, ogg.subarray(0, page + 10), {
          chunkBytes: 500,
        }),
      ))
        responses.push(response);
    });
    assert.equal(error.code, Code.InvalidArgument);
    assert.match(
      error.rawMessage,
      new RegExp(`^audio: the stream ended inside an Ogg page: 10 bytes left at byte ${page}$`),
    );
    assert.equal(errorInfoOf(error)?.metadata.byte_offset, String(page));
    const results = finals(responses);
    assert.deepEqual(
      results.map((r) => r.utteranceIndex),
      [0, 1, 2],
      'the two whole sentences and the cut one, ended where the audio stopped',
    );
    assert.ok(results[2]!.endMs < truth[2]!.endMs, `the cut utterance ends at ${results[2]!.endMs} ms`);
  });

  describe('rejects bad input with a precise status', () => {
    const cases: Array<[string, RequestInit[], Code, RegExp]> = [
      [
        'missing encoding',
        [cfg({ audioFormat: { encoding: AudioEncoding.UNSPECIFIED, sampleRateHz: RATE, channels: 1 } })],
        Code.InvalidArgument,
        /config\.audio_format\.encoding: missing; allowed LINEAR16, FLOAT32, WAV, MULAW, ALAW, OGG_OPUS, WEBM_OPUS$/,
      ],
      [
        'unknown encoding',
        [cfg({ audioFormat: { encoding: 99 as AudioEncoding, sampleRateHz: RATE, channels: 1 } })],
        Code.InvalidArgument,
        /encoding: 99 is not a known encoding/,
      ],
      [
        'rate 0',
        [cfg({ audioFormat: { ...LINEAR16_16K, sampleRateHz: 0 } })],
        Code.InvalidArgument,
        /sample_rate_hz: 0 is out of range; allowed 8000 to 48000/,
      ],
      [
        'rate too high',
        [cfg({ audioFormat: { ...LINEAR16_16K, sampleRateHz: 96_000 } })],
        Code.InvalidArgument,
        /sample_rate_hz: 96000 is out of range/,
      ],
      [
        'channels 0',
        [cfg({ audioFormat: { ...LINEAR16_16K, channels: 0 } })],
        Code.InvalidArgument,
        /channels: 0 is out of range; allowed 1 or 2/,
      ],
      ['no format', [cfg({})], Code.InvalidArgument, /config\.audio_format: missing/],
      [
        'audio before config',
        [{ request: { case: 'audio', value: new Uint8Array(320) } }],
        Code.FailedPrecondition,
        /audio arrived before config/,
      ],
      [
        'second config',
        [cfg({ audioFormat: LINEAR16_16K }), cfg({ audioFormat: LINEAR16_16K })],
        Code.FailedPrecondition,
        /config: sent twice/,
      ],
      [
        'empty request',
        [cfg({ audioFormat: LINEAR16_16K }), { request: { case: undefined } }],
        Code.InvalidArgument,
        /request: a TranscribeRequest must carry config or audio/,
      ],
      [
        'broken WAV header',
        [
          cfg({ audioFormat: { encoding: AudioEncoding.WAV } }),
          audio(new TextEncoder().encode('RIFX\u0000\u0000\u0000\u0000WAVEfmt ')),
        ],
        Code.InvalidArgument,
        /RIFX|big-endian|RIFF/,
      ],
      [
        'chunk too large',
        [cfg({ audioFormat: LINEAR16_16K }), audio(new Uint8Array(256 * 1024 + 2))],
        Code.ResourceExhausted,
        /larger than performance\.max_audio_chunk_bytes \(262144\)/,
      ],
      [
        'odd LINEAR16 length',
        [cfg({ audioFormat: LINEAR16_16K }), audio(new Uint8Array(3))],
        Code.InvalidArgument,
        /^audio: the stream ended inside a sample frame/,
      ],
      [
        'bad language',
        [cfg({ audioFormat: LINEAR16_16K, language: 'english' })],
        Code.InvalidArgument,
        /config\.language: "english" is not an ISO 639-1 code/,
      ],
      [
        'unknown model',
        [cfg({ audioFormat: LINEAR16_16K, model: 'openai/whisper-huge' })],
        Code.InvalidArgument,
        /config\.model: "openai\/whisper-huge" is not offered; allowed: cortex-test\/whisper-tiny-random/,
      ],
      [
        'interim interval',
        [cfg({ audioFormat: LINEAR16_16K, interimIntervalMs: 50 })],
        Code.InvalidArgument,
        /config\.interim_interval_ms: 50 is out of range; allowed 250 to 10000/,
      ],
      [
        'threshold',
        [cfg({ audioFormat: LINEAR16_16K, endpointing: { speechThreshold: 0.99 } })],
        Code.InvalidArgument,
        /endpointing\.speech_threshold: must be between 0\.1 and 0\.95/,
      ],
      [
        'unsupported language',
        [
          cfg({ audioFormat: LINEAR16_16K, language: 'xx' }),
          audio(toLinear16(concat(silence(0.2), speak('Hello there.'), silence(0.8)))),
        ],
        Code.InvalidArgument,
        /language/,
      ],
    ];
    for (const [name, requests, code, message] of cases) {
      it(name, async () => {
        const error = await expectError(() => collect(t.client.transcription.transcribe(fromList(requests))));
        assert.equal(error.code, code, `${name}: ${error.rawMessage}`);
        assert.match(error.rawMessage, message);
      });
    }

    it('a stream longer than the configured maximum', async () => {
      const limited = await startServerWithEngines({ performance: { max_audio_seconds: 2, workers: 1 } });
      try {
        const error = await expectError(() =>
          collect(
            limited.client.transcription.transcribe(
              clipRequests({ audioFormat: LINEAR16_16K }, toLinear16(silence(3))),
            ),
          ),
        );
        assert.equal(error.code, Code.ResourceExhausted);
        assert.match(error.rawMessage, /longer than performance\.max_audio_seconds \(2 s\)/);
        assert.deepEqual(errorInfoOf(error)?.metadata, { limit: 'performance.max_audio_seconds' });
      } finally {
        await limited.stop();
      }
    });

    it('keeps serving after every bad request', async () => {
      const responses = await collect(
        t.client.transcription.transcribe(clipRequests({ audioFormat: LINEAR16_16K }, toLinear16(clip))),
      );
      assert.equal(finals(responses).length, 3);
    });
  });
});

describe('Transcribe with the model missing', () => {
  it('starts, keeps Transcription NOT_SERVING and names the model and its folder', async () => {
    const models = await testModels();
    const t = await startTestServer(
      {
        models: { cache_dir: models.cacheDir, stt: { model: 'onnx-community/whisper-base' } },
        performance: { workers: 1 },
      },
      (server) => server.loadEngines(),
    );
    try {
      const transcription = await t.client.health.check({ service: 'cortex.voice.v1.Transcription' });
      assert.equal(transcription.status, ServingStatus.NOT_SERVING);
      const synthesis = await t.client.health.check({ service: 'cortex.voice.v1.Synthesis' });
      assert.equal(synthesis.status, ServingStatus.SERVING, 'the other service is unaffected');
      const error = await expectError(() =>
        collect(t.client.transcription.transcribe(fromList([cfg({ audioFormat: LINEAR16_16K })]))),
      );
      assert.equal(error.code, Code.Unavailable);
      assert.ok(error.rawMessage.includes('"onnx-community/whisper-base"'), error.rawMessage);
      assert.ok(
        error.rawMessage.includes(`${models.cacheDir}/onnx-community/whisper-base`),
        error.rawMessage,
      );
    } finally {
      await t.stop();
    }
  });
});

function cfg(value: ConfigInit): RequestInit {
  return { request: { case: 'config', value } };
}

function audio(value: Uint8Array): RequestInit {
  return { request: { case: 'audio', value } };
}

async function* fromList(requests: RequestInit[]): AsyncGenerator<RequestInit> {
  yield* requests;
}

async function* chunks(bytes: Uint8Array, size = 3200): AsyncGenerator<RequestInit> {
  for (let offset = 0; offset < bytes.length; offset += size)
    yield audio(bytes.subarray(offset, offset + size));
}

function utteranceOf(response: TranscribeResponse): number {
  const value = response.event.value;
  return value !== undefined && 'utteranceIndex' in value ? value.utteranceIndex : -1;
}

/** 16 kHz mono → 48 kHz interleaved stereo FLOAT32 bytes (sample repetition; the server resamples). */
function upsampleToStereo48k(samples: Float32Array): Uint8Array {
  const out = new Float32Array(samples.length * 3 * 2);
  samples.forEach((sample, index) => {
    for (let k = 0; k < 3; k += 1) {
      out[(index * 3 + k) * 2] = sample;
      out[(index * 3 + k) * 2 + 1] = sample;
    }
  });
  return new Uint8Array(out.buffer);
}

async function metric(t: TestServer, prefix: string): Promise<number> {
  const body = await (await fetch(t.metricsUrl)).text();
  const line = body.split('\n').find((candidate) => candidate.startsWith(prefix));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail('condition not reached in time');
    await sleep(20);
  }
}

describe('Transcribe when a model worker dies', () => {
  it('replaces the worker, retries the lost recognition and delivers every final', async () => {
    const t = await startServerWithEngines({ performance: { workers: 1 } }, { workerTestHooks: true });
    try {
      const pools = t.server.workerPools;
      assert.ok(pools);
      const sentence = speak('The weather is lovely today.');
      const audio = toLinear16(concat(silence(0.3), sentence, silence(1), sentence, silence(1)));
      let armed = false;
      const responses: TranscribeResponse[] = [];
      for await (const response of t.client.transcription.transcribe(
        clipRequests({ audioFormat: LINEAR16_16K }, audio, { paceMs: 2 }),
      )) {
        responses.push(response);
        if (!armed && response.event.case === 'speechStarted') {
          armed = true;
          const arm = pools.inference.run as unknown as (
            kind: string,
            payload: null,
            options: object,
          ) => Promise<unknown>;
          await arm('crashOnNextRecognize', null, { priority: 0, signal: new AbortController().signal });
        }
      }
      assert.ok(armed);
      assert.deepEqual(
        finals(responses).map((result) => [result.utteranceIndex, result.text]),
        [
          [0, WHISPER_TEXT],
          [1, WHISPER_TEXT],
        ],
      );
      assert.equal(pools.inference.stats().restarts, 1, 'the dead worker was replaced');
      const health = await t.client.health.check({ service: 'cortex.voice.v1.Transcription' });
      assert.equal(health.status, ServingStatus.SERVING);
    } finally {
      await t.stop();
    }
  });
});
