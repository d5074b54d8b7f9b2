import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  AudioEncoding,
  Code,
  ConnectError,
  createVoiceClient,
  errorInfoOf,
  errorReasonOf,
  type SessionStarted,
  type TranscribeResponse,
  type TranscriptionConfigSchema,
  type TranscriptResult,
  type VoiceClient,
} from '../clients/node/index.js';
import { expectError } from './helpers/errors.js';
import { concat, RATE, silence, speak, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

type ConfigInit = MessageInitShape<typeof TranscriptionConfigSchema>;

const LINEAR16_16K = { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 };
const CONFIG: ConfigInit = { audioFormat: LINEAR16_16K, language: 'en' };
/** 100 ms of 16 kHz LINEAR16, what the browser SDK sends. */
const CHUNK_BYTES = 3200;
const KEY_A = 'session-test-key-a';
const KEY_B = 'session-test-key-b';
const GAP_TIMEOUT_MS = 300;
const IDLE_TIMEOUT_MS = 1500;

/** A session opened on `client`: its id and limits from the first event, and the events after it. */
interface OpenSession {
  readonly id: string;
  readonly started: SessionStarted;
  /** Every event after session_started; rejects with the call's status. */
  readonly events: Promise<TranscribeResponse[]>;
  /** The events so far. */
  readonly seen: TranscribeResponse[];
  /** Resolves once an event matching `predicate` has arrived. */
  until(predicate: (event: TranscribeResponse) => boolean): Promise<void>;
}

async function openSession(
  client: VoiceClient,
  config: ConfigInit = CONFIG,
  options: { signal?: AbortSignal } = {},
): Promise<OpenSession> {
  const iterator = client.transcription
    .startTranscriptionSession({ config }, options)
    [Symbol.asyncIterator]();
  const first = await iterator.next();
  assert.ok(!first.done, 'the stream names its session');
  const started = first.value.sessionStarted;
  assert.ok(started, 'the first response carries session_started');
  assert.equal(first.value.event.case, undefined, 'and no event');
  const seen: TranscribeResponse[] = [];
  const waiters = new Set<{ predicate: (event: TranscribeResponse) => boolean; resolve: () => void }>();
  const events = (async () => {
    while (true) {
      const next = await iterator.next();
      if (next.done) return seen;
      seen.push(next.value);
      for (const waiter of waiters) if (waiter.predicate(next.value)) waiter.resolve();
    }
  })();
  events.catch(() => {});
  const until = (predicate: (event: TranscribeResponse) => boolean) =>
    seen.some(predicate)
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          waiters.add({ predicate, resolve });
          events.then(() => reject(new Error('the stream ended first')), reject);
        });
  return { id: started.sessionId, started, events, seen, until };
}

function chunksOf(audio: Uint8Array, size = CHUNK_BYTES): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < audio.length; offset += size)
    chunks.push(audio.subarray(offset, offset + size));
  return chunks;
}

/**
 * Sends the chunks, numbered from `first`, in the given order (of numbers); the last chunk is
 * marked end_of_audio unless `open`. Returns each answer's accepted_through.
 */
async function sendAll(
  client: VoiceClient,
  sessionId: string,
  chunks: readonly Uint8Array[],
  options: { order?: readonly number[]; first?: number; open?: boolean } = {},
): Promise<number[]> {
  const first = options.first ?? 1;
  const last = first + chunks.length - 1;
  const answers: number[] = [];
  for (const sequenceNumber of options.order ?? chunks.map((_, index) => first + index)) {
    const response = await client.transcription.appendSessionAudio({
      sessionId,
      sequenceNumber,
      audio: chunks[sequenceNumber - first]!,
      endOfAudio: options.open !== true && sequenceNumber === last,
    });
    answers.push(response.acceptedThrough);
  }
  return answers;
}

async function transcribe(client: VoiceClient, audio: Uint8Array): Promise<TranscribeResponse[]> {
  async function* requests() {
    yield { request: { case: 'config' as const, value: CONFIG } };
    for (const chunk of chunksOf(audio)) yield { request: { case: 'audio' as const, value: chunk } };
  }
  const responses: TranscribeResponse[] = [];
  for await (const response of client.transcription.transcribe(requests())) responses.push(response);
  return responses;
}

const finals = (responses: readonly TranscribeResponse[]): TranscriptResult[] =>
  responses.flatMap((response) =>
    response.event.case === 'result' && response.event.value.isFinal ? [response.event.value] : [],
  );

/** What must be equal between two transcriptions of the same audio. */
const comparable = (results: readonly TranscriptResult[]) =>
  results.map(({ text, utteranceIndex, startMs, endMs, language, model }) => ({
    text,
    utteranceIndex,
    startMs,
    endMs,
    language,
    model,
  }));

function reasonOf(error: ConnectError): string | undefined {
  return errorReasonOf(error);
}

describe('transcription sessions (StartTranscriptionSession + AppendSessionAudio)', () => {
  let t: TestServer;
  let keyA: VoiceClient;
  let keyB: VoiceClient;
  let clip: Uint8Array;
  let clipFinals: TranscriptResult[];
  let short: Uint8Array;
  let shortFinals: TranscriptResult[];

  before(async () => {
    t = await startServerWithEngines({
      performance: { max_audio_chunk_bytes: 64 * 1024 },
      service: { sessions: { gap_timeout_ms: GAP_TIMEOUT_MS, idle_timeout_ms: IDLE_TIMEOUT_MS } },
      security: { api_keys: [KEY_A, KEY_B], rate_limit: { enabled: false } },
    });
    keyA = createVoiceClient({ address: t.address, apiKey: KEY_A });
    keyB = createVoiceClient({ address: t.address, apiKey: KEY_B });
    const sentences = [
      speak('The weather is lovely today.'),
      speak('Please send me the report by Friday.'),
      speak('Thank you, and see you soon.'),
    ];
    clip = toLinear16(
      concat(silence(0.5), sentences[0]!, silence(1), sentences[1]!, silence(1.5), sentences[2]!, silence(1)),
    );
    short = toLinear16(concat(silence(0.3), sentences[1]!, silence(1)));
    const transcribed = await transcribe(keyA, clip);
    assert.ok(
      transcribed.every((response) => response.sessionStarted === undefined),
      'Transcribe never sets session_started',
    );
    clipFinals = finals(transcribed);
    shortFinals = finals(await transcribe(keyA, short));
    assert.equal(clipFinals.length, 3);
    assert.equal(shortFinals.length, 1);
  });
  after(async () => {
    keyA?.close();
    keyB?.close();
    await t?.stop();
  });

  it('gives a session fed in chunks the same finals as Transcribe on the same audio', async () => {
    const session = await openSession(keyA);
    assert.match(session.id, /^[0-9a-f-]{36}$/);
    assert.equal(session.started.gapTimeoutMs, GAP_TIMEOUT_MS);
    assert.equal(session.started.idleTimeoutMs, IDLE_TIMEOUT_MS);
    assert.equal(session.started.maxChunkBytes, 64 * 1024);
    const chunks = chunksOf(clip);
    const answers = await sendAll(keyA, session.id, chunks);
    assert.deepEqual(
      answers,
      chunks.map((_, index) => index + 1),
      'each chunk is applied at once',
    );
    const events = await session.events;
    assert.deepEqual(comparable(finals(events)), comparable(clipFinals));
    assert.ok(
      events.every((event) => event.sessionStarted === undefined && event.event.case !== undefined),
      'session_started comes once, first; every later response is an event',
    );
  });

  it('applies chunks that arrive out of order in sequence order', async () => {
    const session = await openSession(keyA);
    const chunks = chunksOf(short);
    // Every pair swapped: 2, 1, 4, 3, …
    const order = chunks.map((_, index) => (index % 2 === 0 ? Math.min(index + 2, chunks.length) : index));
    const answers = await sendAll(keyA, session.id, chunks, { order });
    assert.equal(answers[0], order[0] === 1 ? 1 : 0, 'an early chunk is held, not applied');
    assert.equal(answers[1], Math.max(order[0]!, order[1]!), 'the missing chunk applies the held one');
    assert.equal(answers.at(-1), chunks.length);
    assert.deepEqual(comparable(finals(await session.events)), comparable(shortFinals));
  });

  it('acknowledges a repeated sequence number and ignores its bytes', async () => {
    const session = await openSession(keyA);
    const chunks = chunksOf(short);
    const noise = new Uint8Array(CHUNK_BYTES).fill(0x7f);
    for (let index = 0; index < chunks.length; index += 1) {
      const sequenceNumber = index + 1;
      const request = { sessionId: session.id, sequenceNumber, endOfAudio: sequenceNumber === chunks.length };
      const first = await keyA.transcription.appendSessionAudio({ ...request, audio: chunks[index]! });
      const retry = await keyA.transcription.appendSessionAudio({ ...request, audio: noise });
      assert.equal(first.acceptedThrough, sequenceNumber);
      assert.equal(retry.acceptedThrough, sequenceNumber, 'a retry gets the same answer');
    }
    assert.deepEqual(comparable(finals(await session.events)), comparable(shortFinals));
    const late = await keyA.transcription.appendSessionAudio({
      sessionId: session.id,
      sequenceNumber: chunks.length,
      endOfAudio: true,
    });
    assert.equal(
      late.acceptedThrough,
      chunks.length,
      'a retry after the stream has finished is acknowledged too',
    );
  });

  it('holds chunks after a missing number, then fails with FAILED_PRECONDITION naming it', async () => {
    const session = await openSession(keyA);
    const [one, , three] = chunksOf(short);
    const append = (sequenceNumber: number, audio: Uint8Array) =>
      keyA.transcription.appendSessionAudio({ sessionId: session.id, sequenceNumber, audio });
    assert.equal((await append(1, one!)).acceptedThrough, 1);
    assert.equal((await append(3, three!)).acceptedThrough, 1, 'chunk 3 is held');
    const failed = await expectError(session.events);
    assert.equal(failed.code, Code.FailedPrecondition, failed.rawMessage);
    assert.equal(reasonOf(failed), 'OUT_OF_ORDER');
    assert.match(failed.rawMessage, /chunk 2 \(sequence_number\) did not arrive within 300 ms/);
    assert.match(failed.rawMessage, /service\.sessions\.gap_timeout_ms/);
    assert.deepEqual(errorInfoOf(failed)?.metadata, {
      limit: 'service.sessions.gap_timeout_ms',
      limit_value: '300',
      session_id: session.id,
      missing_sequence_number: '2',
    });
    const later = await expectError(append(4, three!));
    assert.equal(later.code, Code.FailedPrecondition);
    assert.match(later.rawMessage, /chunk 2 \(sequence_number\) did not arrive/);
  });

  it('answers NOT_FOUND for an unknown session and INVALID_ARGUMENT for a missing id or number', async () => {
    const unknown = await expectError(
      keyA.transcription.appendSessionAudio({ sessionId: randomUUID(), sequenceNumber: 1 }),
    );
    assert.equal(unknown.code, Code.NotFound);
    assert.equal(reasonOf(unknown), 'SESSION_NOT_FOUND');
    assert.match(unknown.rawMessage, /no transcription session "[0-9a-f-]{36}"/);
    const noId = await expectError(keyA.transcription.appendSessionAudio({ sequenceNumber: 1 }));
    assert.equal(noId.code, Code.InvalidArgument);
    assert.match(noId.rawMessage, /^session_id: missing/);
    const session = await openSession(keyA);
    const noNumber = await expectError(keyA.transcription.appendSessionAudio({ sessionId: session.id }));
    assert.equal(noNumber.code, Code.InvalidArgument);
    assert.match(noNumber.rawMessage, /sequence_number: 0 is not valid; chunks are numbered from 1/);
    await keyA.transcription.appendSessionAudio({
      sessionId: session.id,
      sequenceNumber: 1,
      endOfAudio: true,
    });
    assert.deepEqual(await session.events, [], 'no audio, no events: the stream ends with OK');
    const ended = await expectError(
      keyA.transcription.appendSessionAudio({ sessionId: session.id, sequenceNumber: 2 }),
    );
    assert.equal(ended.code, Code.NotFound, 'an ended session is NOT_FOUND');
  });

  it("refuses another caller's session with PERMISSION_DENIED", async () => {
    const session = await openSession(keyA);
    const append = (client: VoiceClient) =>
      client.transcription.appendSessionAudio({
        sessionId: session.id,
        sequenceNumber: 1,
        audio: short.subarray(0, 320),
      });
    for (const [other, who] of [
      [keyB, 'another API key'],
      [t.client, 'a caller without a key'],
    ] as const) {
      const denied = await expectError(append(other));
      assert.equal(denied.code, Code.PermissionDenied, `${who}: ${denied.rawMessage}`);
      assert.equal(reasonOf(denied), 'PERMISSION_DENIED');
      assert.match(denied.rawMessage, /belongs to another caller/);
    }
    assert.equal((await append(keyA)).acceptedThrough, 1, 'the owner still can');
    await keyA.transcription.appendSessionAudio({
      sessionId: session.id,
      sequenceNumber: 2,
      endOfAudio: true,
    });
    await session.events;

    const anonymous = await openSession(t.client);
    const keyed = await expectError(
      keyA.transcription.appendSessionAudio({ sessionId: anonymous.id, sequenceNumber: 1 }),
    );
    assert.equal(keyed.code, Code.PermissionDenied, 'a keyed caller cannot use an anonymous session');
    await t.client.transcription.appendSessionAudio({
      sessionId: anonymous.id,
      sequenceNumber: 1,
      endOfAudio: true,
    });
    await anonymous.events;
  });

  it('ends a session that gets no audio for the idle timeout with DEADLINE_EXCEEDED naming the key', async () => {
    const session = await openSession(keyA);
    await keyA.transcription.appendSessionAudio({
      sessionId: session.id,
      sequenceNumber: 1,
      audio: short.subarray(0, CHUNK_BYTES),
    });
    const idle = await expectError(session.events);
    assert.equal(idle.code, Code.DeadlineExceeded, idle.rawMessage);
    assert.equal(reasonOf(idle), 'SESSION_IDLE');
    assert.match(idle.rawMessage, /no new audio chunk for 1500 ms \(service\.sessions\.idle_timeout_ms\)/);
    assert.deepEqual(errorInfoOf(idle)?.metadata, {
      limit: 'service.sessions.idle_timeout_ms',
      limit_value: '1500',
      session_id: session.id,
    });
    const later = await expectError(
      keyA.transcription.appendSessionAudio({ sessionId: session.id, sequenceNumber: 2 }),
    );
    assert.equal(later.code, Code.NotFound);
    assert.match(later.rawMessage, /has ended: no new audio chunk came for 1500 ms/);
  });

  it('flushes the pending utterance on end_of_audio and ends with OK', async () => {
    const speechOnly = toLinear16(concat(silence(0.3), speak('Please send me the report by Friday.')));
    const session = await openSession(keyA);
    const chunks = chunksOf(speechOnly);
    await sendAll(keyA, session.id, chunks.slice(0, -1), { open: true });
    assert.equal(finals(session.seen).length, 0, 'no final before the end of the audio');
    await keyA.transcription.appendSessionAudio({
      sessionId: session.id,
      sequenceNumber: chunks.length,
      audio: chunks.at(-1)!,
      endOfAudio: true,
    });
    const results = finals(await session.events);
    assert.equal(results.length, 1);
    assert.ok(results[0]!.endMs >= (speechOnly.length / 2 / RATE) * 1000 - 250, `end ${results[0]!.endMs}`);
  });

  it('ends the session when its stream is cancelled: appends then get NOT_FOUND', async () => {
    const controller = new AbortController();
    const session = await openSession(keyA, CONFIG, { signal: controller.signal });
    await sendAll(keyA, session.id, chunksOf(short).slice(0, 5), { open: true });
    controller.abort();
    assert.equal((await expectError(session.events)).code, Code.Canceled);
    // The server hears of the cancel a moment later: retry chunk 5 (a repeat, so harmless) until it has.
    let answer: ConnectError | undefined;
    for (let attempt = 0; attempt < 500 && answer === undefined; attempt += 1) {
      answer = await keyA.transcription.appendSessionAudio({ sessionId: session.id, sequenceNumber: 5 }).then(
        () => undefined,
        (error: unknown) => ConnectError.from(error),
      );
    }
    assert.ok(answer, 'the session ended');
    assert.equal(answer.code, Code.NotFound);
    assert.match(answer.rawMessage, /has ended: its stream ended \(the client cancelled the call\)/);
  });

  it('refuses a chunk over performance.max_audio_chunk_bytes and keeps the session', async () => {
    const session = await openSession(keyA);
    const large = await expectError(
      keyA.transcription.appendSessionAudio({
        sessionId: session.id,
        sequenceNumber: 1,
        audio: new Uint8Array(64 * 1024 + 2),
      }),
    );
    assert.equal(large.code, Code.ResourceExhausted);
    assert.match(large.rawMessage, /larger than performance\.max_audio_chunk_bytes \(65536\)/);
    await sendAll(keyA, session.id, chunksOf(short));
    assert.deepEqual(comparable(finals(await session.events)), comparable(shortFinals));
  });
});

describe('transcription sessions: admission by capacity and drain', () => {
  let t: TestServer;
  let client: VoiceClient;
  let sentence: Float32Array;
  /** Left to the server's default: the multilingual model, as in the capacity test of Transcribe. */
  const config: ConfigInit = { audioFormat: LINEAR16_16K };

  before(async () => {
    t = await startServerWithEngines({
      performance: { workers: 1, max_final_delay_ms: 1000 },
      security: { rate_limit: { enabled: false } },
    });
    client = createVoiceClient({ address: t.address });
    sentence = speak('Please send me the report by Friday.');
  });
  after(async () => {
    client?.close();
    await t?.stop();
  });

  it('admits sessions by capacity together with Transcribe streams, refusing past it with OVER_CAPACITY', async () => {
    const modelId = t.config.models.stt.model;
    // 300 ms a final on one worker: room for 3 live streams within 1 s at p95 (as in the Transcribe test).
    t.server.capacity.calibrate(modelId, { fixedSeconds: 0.3, perAudioSecond: 0 });
    const room = (await t.client.transcription.getCapacity({})).models.find((m) => m.model === modelId);
    assert.equal(room?.availableStreams, 3);
    const sessions = [await openSession(client, config), await openSession(client, config)];
    let released!: () => void;
    const release = new Promise<void>((resolve) => {
      released = resolve;
    });
    async function* held() {
      yield { request: { case: 'config' as const, value: config } };
      await release;
    }
    const stream = (async () => {
      for await (const _ of client.transcription.transcribe(held())) {
        // no audio, no events
      }
    })();
    // The Transcribe stream is admitted once its config arrives.
    while ((await t.client.transcription.getCapacity({})).admittedStreams < 3) {
      // one more look
    }
    const refused = await expectError(openSession(client, config));
    assert.equal(refused.code, Code.ResourceExhausted, refused.rawMessage);
    assert.equal(reasonOf(refused), 'OVER_CAPACITY');
    assert.match(refused.rawMessage, /past performance\.max_final_delay_ms = 1000 ms/);
    assert.equal((await t.client.transcription.getCapacity({})).admittedStreams, 3);
    released();
    await stream;
    const admitted = await openSession(client, config);
    for (const session of [...sessions, admitted]) {
      await sendAll(client, session.id, [new Uint8Array(0)]);
      await session.events;
    }
    assert.equal((await t.client.transcription.getCapacity({})).admittedStreams, 0);
  });

  it('keeps a session open through the drain like a Transcribe stream, then ends it with UNAVAILABLE', async () => {
    const session = await openSession(client, config);
    const chunks = chunksOf(toLinear16(concat(silence(0.3), sentence, silence(1))));
    await sendAll(client, session.id, chunks, { open: true });
    await session.until((event) => event.event.case === 'result' && event.event.value.isFinal);
    const stopping = t.stop(500);
    const refused = await expectError(openSession(client, config));
    assert.equal(refused.code, Code.Unavailable, 'no new session while draining');
    const drained = await expectError(session.events);
    assert.equal(drained.code, Code.Unavailable, drained.rawMessage);
    assert.equal(reasonOf(drained), 'DRAINING');
    assert.equal(finals(session.seen).length, 1, 'the final computed before the drain was delivered');
    await stopping;
  });
});

describe('transcription sessions: finishing during a drain', () => {
  it('accepts the audio of a session open when the drain began, flushes it and ends with OK', async () => {
    const t = await startServerWithEngines({ security: { rate_limit: { enabled: false } } });
    const client = createVoiceClient({ address: t.address });
    let stopping: Promise<void> | undefined;
    try {
      const sentence = speak('Thank you, and see you soon.');
      const chunks = chunksOf(toLinear16(concat(silence(0.3), sentence, silence(0.8), sentence)));
      const half = Math.floor(chunks.length / 2);
      const session = await openSession(client);
      await sendAll(client, session.id, chunks.slice(0, half), { open: true });
      stopping = t.stop(5000);
      await sendAll(client, session.id, chunks.slice(half), { first: half + 1 });
      assert.equal(finals(await session.events).length, 2);
    } finally {
      client.close();
      await (stopping ?? t.stop());
    }
  });
});
