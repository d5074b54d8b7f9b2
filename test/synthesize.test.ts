import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { credentials, Client as GrpcClient, Metadata, type ServiceError } from '@grpc/grpc-js';
import wavefile from 'wavefile';
import {
  AudioEncoding,
  Code,
  type ConnectError,
  errorInfoOf,
  errorReasonOf,
  type SynthesisConfig,
  type SynthesizeRequestSchema,
  type SynthesizeResponse,
  type TranscribeRequestSchema,
  type TranscriptResult,
} from '../clients/node/index.js';
import { generateVitsModel } from './fixtures/vits-model.js';
import { expectError } from './helpers/errors.js';
import { testModels } from './helpers/models.js';
import { createRequestQueue } from './helpers/request-queue.js';
import { rms } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

/**
 * The Synthesis service end to end: the real server on 127.0.0.1, real worker pools running eSpeak NG
 * and a generated VITS model, and the real Node client over HTTP/2 gRPC.
 */

const ESPEAK = 'espeak:en-us';
const ESPEAK_RATE = 22_050;
const VITS = 'vits:cortex-test/tiny-vits';
const VITS_RATE = 16_000;
const SERVICE = 'cortex.voice.v1.Synthesis';
/** These tests make hundreds of calls a minute from one address; rate limits are tested elsewhere. */
const NO_RATE_LIMIT = { security: { rate_limit: { enabled: false } } };

type Request = MessageInitShape<typeof SynthesizeRequestSchema>;
type ConfigInit = Partial<Pick<SynthesisConfig, 'voice' | 'speed' | 'encoding' | 'sampleRateHz'>>;

interface Received {
  readonly response: SynthesizeResponse;
  /** Milliseconds since the call started. */
  readonly atMs: number;
}

const configRequest = (config: ConfigInit = {}): Request => ({ request: { case: 'config', value: config } });
const textRequest = (text: string): Request => ({ request: { case: 'text', value: text } });
const flushRequest = (): Request => ({ request: { case: 'flush', value: {} } });

async function collect(stream: AsyncIterable<SynthesizeResponse>): Promise<Received[]> {
  const started = performance.now();
  const out: Received[] = [];
  for await (const response of stream) out.push({ response, atMs: performance.now() - started });
  return out;
}

function decodeLinear16(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

function decodeFloat32(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

const pcmOf = (received: readonly Received[]): Float32Array =>
  decodeLinear16(Buffer.concat(received.map((r) => r.response.audio)));

const totalSamples = (received: readonly Received[]): number =>
  received.reduce((sum, r) => sum + r.response.sampleCount, 0);

/** Requests: the config, then `tokens` one at a time with a pause before each. */
async function* paced(
  config: ConfigInit,
  tokens: readonly string[],
  delayMs: number,
  onSent?: (index: number, atMs: number) => void,
): AsyncGenerator<Request> {
  const started = performance.now();
  yield configRequest(config);
  for (const [index, token] of tokens.entries()) {
    await sleep(delayMs);
    onSent?.(index, performance.now() - started);
    yield textRequest(token);
  }
}

/** Word and sub-word tokens as a language model streams them: a leading space, up to 4 characters. */
function tokenize(text: string): string[] {
  return text.match(/\s*\S{1,4}/g) ?? [];
}

const CONTROL = /[^\P{Cc}\n\r]/gu;
const HAS_CONTROL = /[^\P{Cc}\n\r]/u;
const squash = (text: string): string => text.replace(CONTROL, ' ').replace(/\s+/g, ' ').trim();

interface StreamExpectation {
  readonly encoding?: AudioEncoding;
  readonly sampleRate?: number;
  readonly voice?: string;
}

/**
 * Checks the contract of one call's responses against all the text sent: sequence numbers, sample
 * offsets and counts, text spans that tile the input and whose text is the `text` field, and the format.
 */
function checkStream(received: readonly Received[], sent: string, expect: StreamExpectation = {}): void {
  const encoding = expect.encoding ?? AudioEncoding.LINEAR16;
  const sampleRate = expect.sampleRate ?? ESPEAK_RATE;
  const voice = expect.voice ?? ESPEAK;
  const codePoints = [...sent];
  assert.ok(received.length > 0, 'some audio arrived');
  let offset = 0n;
  let previous: { start: number; end: number } | undefined;
  const spans: { start: number; end: number }[] = [];
  for (const [index, { response }] of received.entries()) {
    assert.equal(response.sequenceNumber, index, 'sequence numbers count from 0 without gaps');
    assert.equal(response.sampleOffset, offset, `sample_offset of chunk ${index} is the running sum`);
    offset += BigInt(response.sampleCount);
    const header = encoding === AudioEncoding.WAV && index === 0 ? 44 : 0;
    const bytesPerSample = encoding === AudioEncoding.FLOAT32 ? 4 : 2;
    assert.equal(response.audio.length, header + response.sampleCount * bytesPerSample, 'sample_count');
    assert.equal(response.format?.encoding, encoding);
    assert.equal(response.format?.sampleRateHz, sampleRate);
    assert.equal(response.format?.channels, 1);
    assert.equal(response.voice, voice);
    const span = response.textSpan;
    assert.ok(span, 'text_span is set');
    assert.ok(span.start < span.end && span.end <= codePoints.length, `span ${span.start}..${span.end}`);
    if (previous) {
      assert.ok(span.start >= previous.start && span.end >= previous.end, 'spans never go back');
    }
    const spanText = codePoints.slice(span.start, span.end).join('');
    if (HAS_CONTROL.test(spanText)) assert.equal(squash(response.text), squash(spanText));
    else assert.equal(response.text, spanText.trim(), 'text is the span of the input');
    if (!previous || previous.start !== span.start || previous.end !== span.end) spans.push(span);
    previous = { start: span.start, end: span.end };
  }
  // Spans tile the input: each starts where the previous ended, the last ends at the last visible character.
  assert.equal(spans[0]?.start, 0);
  for (let i = 1; i < spans.length; i++) assert.equal(spans[i]?.start, spans[i - 1]?.end, 'spans tile');
  assert.equal(spans.at(-1)?.end, [...sent.replace(CONTROL, ' ').trimEnd()].length, 'all text is spoken');
}

async function metricsText(t: TestServer): Promise<string> {
  const response = await fetch(t.metricsUrl);
  return response.text();
}

/** The sum of a metric's samples whose labels contain every `labels` pair. */
async function metric(t: TestServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  let sum = 0;
  for (const line of (await metricsText(t)).split('\n')) {
    const match = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const set = match[2] ?? '';
    if (Object.entries(labels).every(([key, value]) => set.includes(`${key}="${value}"`))) {
      sum += Number(match[3]);
    }
  }
  return sum;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(25);
  }
}

const REPLY = [
  'Sure, I can help you plan the trip to the mountains this weekend.',
  'The weather looks clear on Saturday, with light wind in the afternoon.',
  'You should leave early, because the roads get busy after nine.',
  'Pack warm layers, some water, and a map in case the phone signal drops.',
];

describe('Synthesis over gRPC', () => {
  let t: TestServer;
  before(async () => {
    t = await startServerWithEngines(NO_RATE_LIMIT);
  });
  after(() => t.stop());

  const speakText = (text: string, config: ConfigInit = {}) =>
    collect(t.client.synthesis.synthesizeText({ text, config }));

  it('speaks non-silent audio whose length follows the text and the speed', async () => {
    const short = 'The quick brown fox jumps over the lazy dog.';
    const long = [
      short,
      'A second sentence follows the first one here.',
      'Then comes a third sentence of similar length.',
      'And the fourth one closes this little paragraph.',
    ].join(' ');
    const one = await speakText(short);
    checkStream(one, short);
    const audio = pcmOf(one);
    assert.ok(rms(audio) > 0.02, `RMS ${rms(audio)} is above silence`);
    assert.equal(audio.length, totalSamples(one));
    const four = await speakText(long);
    checkStream(four, long);
    const ratio = totalSamples(four) / totalSamples(one);
    assert.ok(ratio > 2.5 && ratio < 6, `4× the text gives ${ratio.toFixed(2)}× the samples`);

    const fast = await speakText(short, { speed: 2 });
    const slow = await speakText(short, { speed: 0.5 });
    const fastRatio = totalSamples(fast) / totalSamples(one);
    const slowRatio = totalSamples(slow) / totalSamples(one);
    assert.ok(fastRatio > 0.4 && fastRatio < 0.65, `speed 2.0 gives ${fastRatio.toFixed(2)}× the samples`);
    assert.ok(slowRatio > 1.6 && slowRatio < 2.5, `speed 0.5 gives ${slowRatio.toFixed(2)}× the samples`);
  });

  it('starts speaking a reply streamed token by token before its last sentence is sent', async (context) => {
    const sentences = REPLY.map((sentence, index) => (index === 0 ? sentence : ` ${sentence}`));
    const perSentence = sentences.map(tokenize);
    const tokens = perSentence.flat();
    const lastSentenceFirstToken = tokens.length - (perSentence.at(-1)?.length ?? 0);
    const sentAt: number[] = [];
    let sentWhenFirstAudio = -1;
    const started = performance.now();
    const received: Received[] = [];
    for await (const response of t.client.synthesis.synthesize(
      paced({}, tokens, 25, (index, atMs) => {
        sentAt[index] = atMs;
      }),
    )) {
      if (received.length === 0) sentWhenFirstAudio = sentAt.length;
      received.push({ response, atMs: performance.now() - started });
    }
    const firstAudioMs = received[0]?.atMs ?? Number.NaN;
    const lastSentenceMs = sentAt[lastSentenceFirstToken] ?? Number.NaN;
    assert.ok(
      sentWhenFirstAudio <= lastSentenceFirstToken && firstAudioMs < lastSentenceMs,
      `first audio after ${sentWhenFirstAudio} of ${tokens.length} tokens at ${firstAudioMs.toFixed(0)} ms; ` +
        `the last sentence began with token ${lastSentenceFirstToken} at ${lastSentenceMs.toFixed(0)} ms`,
    );
    context.diagnostic(
      `first audio at ${firstAudioMs.toFixed(0)} ms after ${sentWhenFirstAudio}/${tokens.length} tokens; ` +
        `last sentence started at ${lastSentenceMs.toFixed(0)} ms`,
    );
    assert.equal(received[0]?.response.text, REPLY[0], 'the first chunk speaks the first sentence');
    checkStream(received, tokens.join(''));
    for (const sentence of REPLY) {
      assert.ok(
        received.some((r) => r.response.text === sentence),
        `"${sentence}" is spoken as one segment`,
      );
    }
  });

  it('numbers chunks, offsets samples and maps spans onto multi-byte text split mid-character', async () => {
    // Long enough that one sentence is cut into several 1-second chunks sharing a span.
    const text =
      'Café crème, naïve façade — “quoted” words 😀 and emoji 🎉 here. ' +
      'This second sentence is deliberately rather long so that its audio takes more than one second to say. ' +
      'Short one!';
    const units = [...text];
    // Fragments cut through surrogate pairs are not allowed by UTF-8; cut by code point, every 3.
    const fragments: string[] = [];
    for (let i = 0; i < units.length; i += 3) fragments.push(units.slice(i, i + 3).join(''));
    const received = await collect(t.client.synthesis.synthesize(paced({}, fragments, 0)));
    checkStream(received, text);
    const spans = new Set(received.map((r) => `${r.response.textSpan?.start}`));
    assert.ok(received.length > spans.size, 'a long sentence comes in more than one chunk');
    assert.ok(
      received.every((r) => r.response.sampleCount <= ESPEAK_RATE),
      'no chunk is longer than a second',
    );
  });

  it('speaks the unterminated last sentence when the client half-closes', async () => {
    const text = 'Here is a full sentence. And this one never gets a final mark';
    const received = await collect(t.client.synthesis.synthesize(paced({}, tokenize(text), 5)));
    checkStream(received, text);
    assert.equal(received.at(-1)?.response.text, 'And this one never gets a final mark');
  });

  it('speaks a partial sentence on flush while the stream stays open', async () => {
    const queue = createRequestQueue<Request>();
    queue.push(configRequest());
    queue.push(textRequest('Let me think about that'));
    queue.push(flushRequest());
    const received: Received[] = [];
    const started = performance.now();
    let firstAt = Number.NaN;
    const call = (async () => {
      for await (const response of t.client.synthesis.synthesize(queue)) {
        if (received.length === 0) firstAt = performance.now() - started;
        received.push({ response, atMs: performance.now() - started });
      }
    })();
    await waitFor('the flushed text is spoken', async () => received.length > 0, 5000);
    assert.equal(received[0]?.response.text, 'Let me think about that');
    assert.ok(firstAt < 5000);
    const spokenBeforeMore = received.length;
    queue.push(textRequest(' for a moment. Done.'));
    queue.end();
    await call;
    assert.ok(received.length > spokenBeforeMore, 'the rest came after');
    checkStream(received, 'Let me think about that for a moment. Done.');
    assert.deepEqual(
      [...new Set(received.map((r) => r.response.text))],
      ['Let me think about that', 'for a moment.', 'Done.'],
    );
  });

  it('cancels on client abort: CANCELLED, no active calls, worker queue drained', async () => {
    // Different sentences per call, so none is served from the cache.
    const longText = (call: number) =>
      Array.from(
        { length: 30 },
        (_, i) => `Call ${call} says sentence number ${i + 1} of a long answer that keeps going.`,
      ).join(' ');
    const handledBefore = await metric(t, 'grpc_server_handled_total', {
      grpc_method: 'Synthesize',
      grpc_code: 'CANCELLED',
    });
    const controllers: AbortController[] = [];
    const firstAudio: Promise<void>[] = [];
    const calls: Promise<ConnectError>[] = [];
    for (let i = 0; i < 4; i++) {
      const controller = new AbortController();
      controllers.push(controller);
      let markFirst = () => {};
      firstAudio.push(new Promise((resolve) => (markFirst = resolve)));
      const text = longText(i);
      const responses =
        i % 2 === 0
          ? t.client.synthesis.synthesize(
              (async function* () {
                yield configRequest();
                yield textRequest(text);
                // Keep the stream open: the client, not the end of input, ends this call.
                await new Promise((resolve) => controller.signal.addEventListener('abort', resolve));
              })(),
              { signal: controller.signal },
            )
          : t.client.synthesis.synthesizeText({ text }, { signal: controller.signal });
      calls.push(
        expectError(
          (async () => {
            for await (const _ of responses) markFirst();
          })(),
        ),
      );
    }
    await Promise.all(firstAudio);
    const active = await metric(t, 'voice_active_streams', { grpc_service: SERVICE });
    assert.equal(active, 4, 'four calls are running');
    for (const controller of controllers) controller.abort();
    for (const error of await Promise.all(calls)) assert.equal(error.code, Code.Canceled);
    await waitFor('no Synthesis call is active', async () => {
      return (await metric(t, 'voice_active_streams', { grpc_service: SERVICE })) === 0;
    });
    await waitFor('the worker queue is empty and no worker is busy', async () => {
      const text = await metricsText(t);
      return /^voice_worker_queue_depth 0$/m.test(text) && /^voice_workers_busy 0$/m.test(text);
    });
    const handledAfter = await metric(t, 'grpc_server_handled_total', {
      grpc_method: 'Synthesize',
      grpc_code: 'CANCELLED',
    });
    assert.equal(handledAfter - handledBefore, 2, 'both Synthesize calls ended as CANCELLED');
    // The server still serves.
    checkStream(await speakText('Still here.'), 'Still here.');
  });

  it('serves 20 concurrent streams, each complete and in order', async () => {
    const texts = Array.from(
      { length: 20 },
      (_, i) =>
        `Caller ${i + 1} asks a question. The answer has two parts, number ${i + 1}. Goodbye ${i + 1}!`,
    );
    const results = await Promise.all(
      texts.map((text, i) =>
        i % 2 === 0 ? speakText(text) : collect(t.client.synthesis.synthesize(paced({}, tokenize(text), 2))),
      ),
    );
    for (const [i, received] of results.entries()) {
      checkStream(received, texts[i] ?? '');
      assert.equal(received.at(-1)?.response.text, `Goodbye ${i + 1}!`);
    }
  });

  describe('bad input', () => {
    const check = async (
      call: () => Promise<unknown>,
      code: Code,
      ...patterns: RegExp[]
    ): Promise<ConnectError> => {
      const error = await expectError(call());
      assert.equal(error.code, code, `${Code[error.code]}: ${error.rawMessage}`);
      for (const pattern of patterns) assert.match(error.rawMessage, pattern);
      return error;
    };
    const text =
      (value: string, config: ConfigInit = {}) =>
      () =>
        collect(t.client.synthesis.synthesizeText({ text: value, config }));
    const stream =
      (...requests: Request[]) =>
      () =>
        collect(
          t.client.synthesis.synthesize(
            (async function* () {
              yield* requests;
            })(),
          ),
        );

    it('rejects empty, blank and too long text naming the field and the limit', async () => {
      await check(text(''), Code.InvalidArgument, /^text:/, /empty/);
      await check(text(' \n\t  '), Code.InvalidArgument, /^text:/, /whitespace/);
      await check(text('a'.repeat(5001)), Code.InvalidArgument, /^text:/, /5001/, /maximum of 5000/);
      await check(
        stream(configRequest(), textRequest('Fine. '), textRequest('b'.repeat(5001))),
        Code.InvalidArgument,
        /^text:/,
        /maximum of 5000/,
      );
      // Exactly the limit is accepted (mostly spaces, so it is quick to say).
      const atLimit = await speakText(`${' '.repeat(4997)}Hi.`);
      assert.equal(atLimit[0]?.response.textSpan?.end, 5000);
    });

    it('rejects speed, voice, sample rate and encoding outside their allowed values', async () => {
      for (const speed of [3.0, 0.4]) {
        await check(text('Hi.', { speed }), Code.InvalidArgument, /^config\.speed:/, /0\.5 to 2\.0/);
      }
      for (const voice of ['espeak:xx-nope', 'nope']) {
        const error = await check(
          text('Hi.', { voice }),
          Code.InvalidArgument,
          /^config\.voice:/,
          new RegExp(`"${voice}"`),
        );
        assert.ok(error.rawMessage.includes(ESPEAK), `"${error.rawMessage}" lists ${ESPEAK}`);
        assert.equal(errorReasonOf(error), 'UNKNOWN_RESOURCE');
        assert.deepEqual(errorInfoOf(error)?.metadata, { field: 'config.voice' });
      }
      for (const sampleRateHz of [4000, 96000]) {
        await check(
          text('Hi.', { sampleRateHz }),
          Code.InvalidArgument,
          /^config\.sample_rate_hz:/,
          new RegExp(`${sampleRateHz}`),
          /8000 to 48000/,
        );
      }
      await check(
        text('Hi.', { encoding: 99 as AudioEncoding }),
        Code.InvalidArgument,
        /^config\.encoding:/,
        /99/,
        /LINEAR16, FLOAT32, WAV/,
      );
      await check(
        stream(configRequest({ speed: 5 }), textRequest('Hi.')),
        Code.InvalidArgument,
        /^config\.speed:/,
      );
    });

    it('rejects messages out of order or empty', async () => {
      const outOfOrder = await check(
        stream(textRequest('Hello.')),
        Code.FailedPrecondition,
        /text arrived before config/,
      );
      assert.equal(errorReasonOf(outOfOrder), 'OUT_OF_ORDER');
      await check(stream(flushRequest()), Code.FailedPrecondition, /flush arrived before config/);
      await check(
        stream(configRequest(), textRequest('Hello. '), configRequest()),
        Code.FailedPrecondition,
        /^config: sent twice/,
      );
      await check(stream(), Code.InvalidArgument, /^config: missing/);
      await check(stream({}), Code.InvalidArgument, /^request:/, /config, text, flush or clear/);
      await check(
        stream(configRequest(), {}),
        Code.InvalidArgument,
        /^request:/,
        /config, text, flush or clear/,
      );
    });

    it('rejects text that is not valid UTF-8 and keeps serving', async () => {
      const raw = new GrpcClient(t.address, credentials.createInsecure());
      const identity = (bytes: Buffer) => bytes;
      try {
        // SynthesizeTextRequest { text (field 2) = "Hi" 0xff 0xfe "." }
        const badText = Buffer.from([0x12, 0x05, 0x48, 0x69, 0xff, 0xfe, 0x2e]);
        const unary = await new Promise<ServiceError>((resolve, reject) => {
          const call = raw.makeServerStreamRequest(
            `/${SERVICE}/SynthesizeText`,
            identity,
            identity,
            badText,
            new Metadata(),
            {},
          );
          call.on('data', () => reject(new Error('audio for invalid text')));
          call.on('error', resolve);
          call.on('end', () => reject(new Error('ended without an error')));
        });
        assert.equal(unary.code, Code.InvalidArgument);
        assert.match(unary.details, /not a valid cortex\.voice\.v1\.SynthesizeTextRequest/);

        // Synthesize: config {}, then text (field 2) with a lone continuation byte.
        const bidi = await new Promise<ServiceError>((resolve, reject) => {
          const call = raw.makeBidiStreamRequest(`/${SERVICE}/Synthesize`, identity, identity);
          call.on('data', () => {});
          call.on('error', resolve);
          call.on('end', () => reject(new Error('ended without an error')));
          call.write(Buffer.from([0x0a, 0x00]));
          call.write(Buffer.from([0x12, 0x03, 0x61, 0x80, 0x62]));
          call.end();
        });
        assert.equal(bidi.code, Code.InvalidArgument);
        assert.match(bidi.details, /not a valid cortex\.voice\.v1\.SynthesizeRequest/);
      } finally {
        raw.close();
      }
      checkStream(await speakText('Still fine.'), 'Still fine.');
    });

    it('drops control characters but keeps span offsets on the original text', async () => {
      const sent = 'Ring\u0007 the bell\u001b now. Then\u0000 wait for\u0085 me!';
      const received = await speakText(sent);
      checkStream(received, sent);
      for (const { response } of received) {
        assert.doesNotMatch(response.text, HAS_CONTROL, 'the spoken text has no control characters');
      }
      assert.deepEqual(
        [...new Set(received.map((r) => squash(r.response.text)))],
        ['Ring the bell now.', 'Then wait for me!'],
      );
      assert.ok(rms(pcmOf(received)) > 0.02);
    });
  });

  describe('output formats', () => {
    const text = 'Formats differ only in how the samples are written. This is the second sentence.';

    it('returns FLOAT32 in [-1, 1] matching LINEAR16 sample for sample', async () => {
      const linear = await speakText(text, { encoding: AudioEncoding.LINEAR16 });
      const float = await speakText(text, { encoding: AudioEncoding.FLOAT32 });
      checkStream(float, text, { encoding: AudioEncoding.FLOAT32 });
      const floats = decodeFloat32(Buffer.concat(float.map((r) => r.response.audio)));
      const ints = pcmOf(linear);
      assert.equal(floats.length, ints.length);
      let maxDiff = 0;
      for (let i = 0; i < floats.length; i++) {
        const value = floats[i] ?? 0;
        assert.ok(value >= -1 && value <= 1, `sample ${i} = ${value}`);
        maxDiff = Math.max(maxDiff, Math.abs(value - (ints[i] ?? 0)));
      }
      assert.ok(maxDiff <= 1 / 32768 + 1e-7, `max difference ${maxDiff}`);
      assert.ok(rms(floats) > 0.02);
    });

    it('returns WAV with one header, at the start of the first chunk', async () => {
      const linear = await speakText(text);
      const wav = await speakText(text, { encoding: AudioEncoding.WAV });
      checkStream(wav, text, { encoding: AudioEncoding.WAV });
      const ascii = (bytes: Uint8Array | undefined, from: number, to: number) =>
        Buffer.from(bytes?.subarray(from, to) ?? []).toString('latin1');
      assert.equal(ascii(wav[0]?.response.audio, 0, 4), 'RIFF');
      assert.equal(ascii(wav[0]?.response.audio, 8, 12), 'WAVE');
      for (const { response } of wav.slice(1)) assert.notEqual(ascii(response.audio, 0, 4), 'RIFF');
      // Streaming headers carry unknown lengths; fill them in and parse the whole file.
      const file = Buffer.concat(wav.map((r) => r.response.audio));
      const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
      view.setUint32(4, file.length - 8, true);
      view.setUint32(40, file.length - 44, true);
      const parsed = new wavefile.WaveFile(file);
      const fmt = parsed.fmt as { sampleRate: number; numChannels: number; bitsPerSample: number };
      assert.deepEqual([fmt.sampleRate, fmt.numChannels, fmt.bitsPerSample], [ESPEAK_RATE, 1, 16]);
      const samples = parsed.getSamples(false, Int16Array) as unknown as Int16Array;
      const expected = pcmOf(linear);
      assert.equal(samples.length, expected.length);
      assert.ok(samples.every((value, i) => value / 32768 === expected[i]));
    });

    it('resamples to 16000 and 48000 Hz with the expected number of samples', async () => {
      const native = totalSamples(await speakText(text));
      for (const rate of [16_000, 48_000]) {
        const received = await speakText(text, { sampleRateHz: rate });
        checkStream(received, text, { sampleRate: rate });
        const expected = (native * rate) / ESPEAK_RATE;
        const got = totalSamples(received);
        assert.ok(
          Math.abs(got - expected) / expected < 0.01,
          `${got} samples at ${rate} Hz; ${expected.toFixed(0)} expected`,
        );
        assert.ok(rms(pcmOf(received)) > 0.02);
      }
    });
  });

  it('serves a repeated sentence from the cache with identical audio', async () => {
    const sentence = `Your order number ${Date.now()} is confirmed.`;
    const hits = () => metric(t, 'voice_tts_cache_requests_total', { result: 'hit' });
    const misses = () => metric(t, 'voice_tts_cache_requests_total', { result: 'miss' });
    const cachedBytes = () => metric(t, 'voice_tts_cache_bytes');
    const [hitsBefore, missesBefore, bytesBefore] = [await hits(), await misses(), await cachedBytes()];
    const first = await speakText(sentence);
    assert.equal(await misses(), missesBefore + 1);
    assert.equal(await hits(), hitsBefore);
    assert.ok((await cachedBytes()) > bytesBefore, 'the new sentence is held, and the gauge says so');
    const second = await speakText(sentence);
    assert.equal(await hits(), hitsBefore + 1, 'the second call is a cache hit');
    assert.equal(await misses(), missesBefore + 1);
    assert.deepEqual(
      Buffer.concat(second.map((r) => r.response.audio)),
      Buffer.concat(first.map((r) => r.response.audio)),
    );
    // Another encoding of the same sentence is served from the same entry.
    await speakText(sentence, { encoding: AudioEncoding.FLOAT32, sampleRateHz: 16_000 });
    assert.equal(await hits(), hitsBefore + 2);
  });

  it('lists voices, the default first, filtered by language', async () => {
    const all = (await t.client.synthesis.listVoices({})).voices;
    assert.equal(all[0]?.id, ESPEAK);
    assert.equal(all[0]?.isDefault, true);
    assert.equal(all[0]?.sampleRateHz, ESPEAK_RATE);
    assert.equal(all.filter((voice) => voice.isDefault).length, 1);
    const vits = all.find((voice) => voice.id === VITS);
    assert.ok(vits, `${VITS} is listed`);
    assert.equal(vits.sampleRateHz, VITS_RATE);
    assert.ok(
      all.some((voice) => voice.id === 'espeak:de'),
      'other eSpeak languages are listed',
    );
    const english = (await t.client.synthesis.listVoices({ language: 'en' })).voices;
    assert.ok(english.length >= 2 && english.length < all.length);
    assert.ok(english.every((voice) => voice.language.toLowerCase().split('-')[0] === 'en'));
    assert.ok(english.some((voice) => voice.id === 'espeak:en-gb-x-rp'));
    assert.equal(english[0]?.id, ESPEAK);
    assert.equal(english[0]?.isDefault, true);
    assert.deepEqual((await t.client.synthesis.listVoices({ language: 'zz' })).voices, []);
  });

  it('speaks with the neural VITS voice through the worker pool', async () => {
    const short = 'hello there.';
    const long = 'hello there. this is a much longer piece of text for the neural voice.';
    const one = await speakText(short, { voice: VITS });
    checkStream(one, short, { voice: VITS, sampleRate: VITS_RATE });
    assert.ok(rms(pcmOf(one)) > 0.05, 'the generated voice is never silent');
    const two = await speakText(long, { voice: VITS });
    checkStream(two, long, { voice: VITS, sampleRate: VITS_RATE });
    assert.ok(totalSamples(two) > 3 * totalSamples(one), 'longer text, more samples');
    const resampled = await speakText(short, { voice: VITS, sampleRateHz: ESPEAK_RATE });
    const expected = (totalSamples(one) * ESPEAK_RATE) / VITS_RATE;
    assert.ok(Math.abs(totalSamples(resampled) - expected) / expected < 0.01);

    const fast = await speakText(short, { voice: VITS, speed: 2 });
    const ratio = totalSamples(fast) / totalSamples(one);
    assert.ok(ratio > 0.4 && ratio < 0.65, `speed 2.0 gives ${ratio.toFixed(2)}× the samples`);
  });

  it('round-trips through Transcribe: one final result per synthesized sentence', async () => {
    const text = 'Good morning to you. The meeting starts at ten. Please bring your notes.';
    const received = await speakText(text, { sampleRateHz: 16_000 });
    checkStream(received, text, { sampleRate: 16_000 });
    // Group chunks by sentence and put 700 ms of silence between sentences.
    const sentences: Uint8Array[][] = [];
    let lastStart = -1;
    for (const { response } of received) {
      const start = response.textSpan?.start ?? -1;
      if (start !== lastStart) sentences.push([]);
      sentences.at(-1)?.push(response.audio);
      lastStart = start;
    }
    assert.equal(sentences.length, 3);
    const gap = new Uint8Array(0.7 * 16_000 * 2);
    const audio: Uint8Array[] = [];
    const sentenceStartMs: number[] = [];
    let bytes = 0;
    for (const chunks of sentences) {
      sentenceStartMs.push(bytes / 32);
      for (const chunk of [...chunks, gap]) {
        audio.push(chunk);
        bytes += chunk.length;
      }
    }
    async function* requests(): AsyncGenerator<MessageInitShape<typeof TranscribeRequestSchema>> {
      yield {
        request: {
          case: 'config',
          value: {
            audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: 16_000, channels: 1 },
            language: 'en',
            endpointing: { minSilenceDurationMs: 250 },
          },
        },
      };
      // 100 ms per message, as a live client would send.
      const all = Buffer.concat(audio);
      for (let at = 0; at < all.length; at += 3200) {
        yield { request: { case: 'audio', value: all.subarray(at, at + 3200) } };
      }
    }
    const finals: TranscriptResult[] = [];
    for await (const response of t.client.transcription.transcribe(requests())) {
      if (response.event.case === 'result' && response.event.value.isFinal) finals.push(response.event.value);
    }
    assert.equal(finals.length, 3, `finals: ${JSON.stringify(finals.map((f) => [f.startMs, f.text]))}`);
    for (const [index, final] of finals.entries()) {
      assert.equal(final.utteranceIndex, index);
      assert.ok(final.text.length > 0);
      const sentenceAt = sentenceStartMs[index] ?? 0;
      assert.ok(
        Math.abs(final.startMs - sentenceAt) < 400,
        `utterance ${index} starts at ${final.startMs} ms; its sentence at ${sentenceAt} ms`,
      );
      if (index > 0) assert.ok(final.startMs > (finals[index - 1]?.endMs ?? 0));
    }
  });
});

describe('Synthesis with other settings', () => {
  const MMS_ENGLISH = 'cortex-test/mms-tts-eng';
  let t: TestServer;
  before(async () => {
    // A VITS model named like the MMS-TTS exports, whose ids end in an ISO 639-3 code.
    await generateVitsModel({ root: (await testModels()).cacheDir, modelId: MMS_ENGLISH });
    t = await startServerWithEngines({
      ...NO_RATE_LIMIT,
      models: { tts: { max_stream_text_chars: 60, max_text_chars: 40, neural_models: [MMS_ENGLISH] } },
    });
  });
  after(() => t.stop());

  it('ends a stream whose total text passes the limit with RESOURCE_EXHAUSTED, after its audio', async () => {
    const received: SynthesizeResponse[] = [];
    const error = await expectError(
      (async () => {
        const requests = (async function* () {
          yield configRequest();
          yield textRequest('One sentence here. ');
          yield textRequest('Another sentence. ');
          yield textRequest('A third one makes it far too much.');
        })();
        for await (const response of t.client.synthesis.synthesize(requests)) received.push(response);
      })(),
    );
    assert.equal(error.code, Code.ResourceExhausted, error.rawMessage);
    assert.match(error.rawMessage, /^text:/);
    assert.match(error.rawMessage, /models\.tts\.max_stream_text_chars \(60\)/);
    assert.equal(errorReasonOf(error), 'LIMIT_EXCEEDED');
    assert.deepEqual(
      [...new Set(received.map((r) => r.text))],
      ['One sentence here.', 'Another sentence.'],
      'what was complete before the limit is still spoken',
    );
  });

  it('applies the per-request limit from the config', async () => {
    const error = await expectError(collect(t.client.synthesis.synthesizeText({ text: 'x'.repeat(41) })));
    assert.equal(error.code, Code.InvalidArgument);
    assert.match(error.rawMessage, /^text: 41 characters is more than the maximum of 40/);
  });

  it('lists an MMS-TTS voice under its ISO 639-1 language', async () => {
    const all = (await t.client.synthesis.listVoices({})).voices;
    const mms = all.find((voice) => voice.id === `vits:${MMS_ENGLISH}`);
    assert.ok(mms, `vits:${MMS_ENGLISH} is loaded`);
    assert.equal(mms.language, 'en', 'the contract promises ISO 639-1 (or BCP-47) languages');
    const english = (await t.client.synthesis.listVoices({ language: 'en' })).voices;
    assert.ok(
      english.some((voice) => voice.id === mms.id),
      'the "en" filter finds it',
    );
  });
});
