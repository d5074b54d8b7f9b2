import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import {
  AudioEncoding,
  Code,
  createVoiceClient,
  errorInfoOf,
  type TranscribeResponse,
  type TranscriptionConfigSchema,
} from '../clients/node/index.js';
import { Reason, VoiceError } from '../server/errors.js';
import {
  type TranscribeRequest,
  TranscribeRequestSchema,
} from '../server/gen/cortex/voice/v1/transcription_pb.js';
import { createLogger } from '../server/observability/logger.js';
import { createAdmission } from '../server/service/admission.js';
import type { CallContext } from '../server/service/context.js';
import { createTranscriptionService } from '../server/service/transcription.js';
import {
  analysedMs,
  finalsOf,
  observe,
  processedMsOf,
  reasonOf,
  signalled,
  stalledSynthesis,
} from './helpers/drain.js';
import { expectError } from './helpers/errors.js';
import { captureLogs } from './helpers/log-capture.js';
import { concat, RATE, silence, speak, speechBounds, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

type ConfigInit = MessageInitShape<typeof TranscriptionConfigSchema>;

const CONFIG: ConfigInit = {
  audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 },
  language: 'en',
};
/** What the generated test models say for any speech. */
const MODEL_TEXT = 'hello world';
/** 100 ms of 16 kHz LINEAR16. */
const CHUNK_BYTES = 3200;

function chunksOf(audio: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < audio.length; at += CHUNK_BYTES) chunks.push(audio.subarray(at, at + CHUNK_BYTES));
  return chunks;
}

/** Speech, then a pause too short to end the utterance (min_silence 500 ms): its final is pending. */
function pendingUtterance(sentence: Float32Array): Float32Array {
  return concat(silence(0.3), sentence, silence(0.1));
}

const SERVER = { security: { rate_limit: { enabled: false } } };

/**
 * A server of its own with one Transcribe stream that sends `config`, then `audio`, and never
 * half-closes (so only a drain can end it); `close` ends the client and the server.
 */
async function heldTranscription(config: ConfigInit, audio: Float32Array) {
  const t = await startServerWithEngines(SERVER);
  const client = createVoiceClient({ address: t.address });
  const hold = signalled();
  async function* requests() {
    yield { request: { case: 'config' as const, value: config } };
    for (const chunk of chunksOf(toLinear16(audio)))
      yield { request: { case: 'audio' as const, value: chunk } };
    await hold.promise;
  }
  return {
    t,
    stream: observe(client.transcription.transcribe(requests())),
    async close() {
      hold.fire();
      client.close();
      await t.stop();
    },
  };
}

describe('drain: a Transcribe handler told to finish (in process, real engines)', () => {
  let t: TestServer;
  let sentence: Float32Array;
  before(async () => {
    t = await startServerWithEngines(SERVER);
    sentence = speak('Please send me the report by Friday.');
  });
  after(() => t?.stop());

  it('stops reading, recognises the pending utterance, then fails DRAINING with processed_audio_ms', async () => {
    const service = createTranscriptionService(t.server.engines, t.config, {
      admission: createAdmission(10),
    });
    const audio = pendingUtterance(sentence);
    const finish = new AbortController();
    const readAll = signalled();
    const finished = signalled();
    let readsAfter = 0;
    async function* requests(): AsyncGenerator<TranscribeRequest> {
      yield create(TranscribeRequestSchema, { request: { case: 'config', value: CONFIG } });
      for (const chunk of chunksOf(toLinear16(audio)))
        yield create(TranscribeRequestSchema, { request: { case: 'audio', value: chunk } });
      // The handler asks for more: everything sent so far has been read. Tell it to finish, then
      // offer more audio, which must never be read.
      readAll.fire();
      await finished.promise;
      for (const chunk of chunksOf(toLinear16(concat(sentence, silence(1))))) {
        readsAfter += 1;
        yield create(TranscribeRequestSchema, { request: { case: 'audio', value: chunk } });
      }
    }
    const ctx = inProcessContext(t, finish.signal, 'drain-in-process');
    const responses = observe(service.transcribe(requests(), ctx));
    await readAll.promise;
    finish.abort(new VoiceError(Reason.Draining, 'the server is shutting down'));
    finished.fire();
    const error = await responses.done.then(
      () => assert.fail('the drained stream ended OK'),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof VoiceError);
    assert.equal(error.reason, Reason.Draining);
    assert.deepEqual(error.info, { processed_audio_ms: String(analysedMs(audio.length)) });
    const finals = finalsOf(responses.seen as unknown as TranscribeResponse[]);
    assert.equal(finals.length, 1, 'the pending utterance was flushed and recognised');
    assert.equal(finals[0]?.text, MODEL_TEXT);
    assert.equal(finals[0]?.utteranceIndex, 0);
    assert.ok(readsAfter <= 1, `the audio offered after the finish was not read (${readsAfter} reads)`);
  });

  it('ends at once with DRAINING and nothing processed when told to finish before its config arrived', async () => {
    const service = createTranscriptionService(t.server.engines, t.config, {
      admission: createAdmission(10),
    });
    const finish = new AbortController();
    const never = new Promise<never>(() => {});
    async function* requests(): AsyncGenerator<TranscribeRequest> {
      yield await never;
    }
    const ctx = inProcessContext(t, finish.signal, 'drain-before-config');
    const responses = observe(service.transcribe(requests(), ctx));
    finish.abort(new VoiceError(Reason.Draining, 'the server is shutting down'));
    const error = await responses.done.then(
      () => assert.fail('the drained stream ended OK'),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof VoiceError);
    assert.equal(error.reason, Reason.Draining);
    assert.deepEqual(error.info, { processed_audio_ms: '0' });
  });
});

describe('drain: Transcribe over gRPC', () => {
  let sentence: Float32Array;
  before(() => {
    sentence = speak('Please send me the report by Friday.');
  });

  it('delivers the final of the utterance in progress at the grace end, then UNAVAILABLE DRAINING', async () => {
    const audio = pendingUtterance(sentence);
    const { t, stream, close } = await heldTranscription(CONFIG, audio);
    try {
      await stream.until((response) => response.event.case === 'speechStarted');
      const stopping = t.stop(1500, 5000);
      const error = await expectError(stream.done);
      assert.equal(error.code, Code.Unavailable, error.rawMessage);
      assert.equal(reasonOf(error), 'DRAINING');
      // Read within the 1.5 s grace (loopback, generated models): all of it, to the frame.
      assert.equal(processedMsOf(error), analysedMs(audio.length));
      const finals = finalsOf(stream.seen);
      assert.equal(finals.length, 1);
      assert.equal(finals[0]?.text, MODEL_TEXT);
      assert.equal(finals[0]?.utteranceIndex, 0);
      const speechEndMs = 300 + speechBounds(sentence).endMs;
      assert.ok(finals[0]!.endMs >= speechEndMs - 100, `final ends at ${finals[0]?.endMs} ms`);
      assert.ok(finals[0]!.endMs <= processedMsOf(error) + 32);
      await stopping;
    } finally {
      await close();
    }
  });

  it('ends a resumable stream at its last AudioCommitted point, leaving the utterance in progress to the stream that resumes', async () => {
    const audio = concat(silence(0.3), sentence, silence(1.5), sentence, silence(0.1));
    const { t, stream, close } = await heldTranscription({ ...CONFIG, resumable: true }, audio);
    try {
      await stream.until((r) => r.event.case === 'result' && r.event.value.isFinal);
      await stream.until((r) => r.event.case === 'speechStarted' && r.event.value.utteranceIndex === 1);
      const stopping = t.stop(500, 5000);
      const error = await expectError(stream.done);
      assert.equal(error.code, Code.Unavailable, error.rawMessage);
      assert.equal(reasonOf(error), 'DRAINING');
      const commits = stream.seen.flatMap((r) => (r.event.case === 'audioCommitted' ? [r.event.value] : []));
      const last = commits.at(-1);
      assert.ok(last !== undefined, 'a commit point was sent after the first final');
      assert.equal(last.nextUtteranceIndex, 1);
      const secondStart = stream.seen.find(
        (r) => r.event.case === 'speechStarted' && r.event.value.utteranceIndex === 1,
      );
      assert.ok(
        secondStart?.event.case === 'speechStarted' &&
          Number(last.offsetMs) < secondStart.event.value.offsetMs,
        'the stream is committed no further than before the utterance in progress',
      );
      const info = errorInfoOf(error)?.metadata;
      assert.equal(info?.committed_offset_ms, String(last.offsetMs));
      assert.equal(info?.processed_audio_ms, String(last.offsetMs));
      assert.match(error.rawMessage, /resume the stream from its last AudioCommitted point/);
      const finals = finalsOf(stream.seen);
      assert.deepEqual(
        finals.map((f) => f.utteranceIndex),
        [0],
        'the utterance in progress is not recognised cut short',
      );
      await stopping;
    } finally {
      await close();
    }
  });

  it('does not read what the client sends after the grace; processed_audio_ms says where it stopped', async () => {
    const t = await startServerWithEngines(SERVER);
    const client = createVoiceClient({ address: t.address });
    const graceOver = signalled();
    try {
      const first = pendingUtterance(sentence);
      async function* requests() {
        yield { request: { case: 'config' as const, value: CONFIG } };
        for (const chunk of chunksOf(toLinear16(first)))
          yield { request: { case: 'audio' as const, value: chunk } };
        await graceOver.promise;
        for (const chunk of chunksOf(toLinear16(concat(silence(0.8), sentence, silence(1))))) {
          yield { request: { case: 'audio' as const, value: chunk } };
        }
      }
      const stream = observe(client.transcription.transcribe(requests()));
      await stream.until((response) => response.event.case === 'speechStarted');
      const stopping = t.stop(1000, 5000);
      // The pending final comes out only once the grace is over and the input has ended.
      await stream.until((response) => response.event.case === 'result' && response.event.value.isFinal);
      graceOver.fire();
      const error = await expectError(stream.done);
      assert.equal(reasonOf(error), 'DRAINING');
      assert.equal(
        processedMsOf(error),
        analysedMs(first.length),
        'the audio sent after the grace was not analysed',
      );
      assert.equal(finalsOf(stream.seen).length, 1, 'no utterance of the later audio');
      assert.ok(
        !stream.seen.some((r) => r.event.case === 'speechStarted' && r.event.value.utteranceIndex > 0),
        'the later speech was never detected',
      );
      await stopping;
    } finally {
      graceOver.fire();
      client.close();
      await t.stop();
    }
  });

  it('drains a StartTranscriptionSession the same way; later appends are told the session has ended', async () => {
    const t = await startServerWithEngines(SERVER);
    const client = createVoiceClient({ address: t.address });
    try {
      const audio = pendingUtterance(sentence);
      const iterator = client.transcription
        .startTranscriptionSession({ config: CONFIG })
        [Symbol.asyncIterator]();
      const started = await iterator.next();
      const sessionId = started.value?.sessionStarted?.sessionId ?? '';
      assert.notEqual(sessionId, '');
      const events = observe({ [Symbol.asyncIterator]: () => iterator });
      const chunks = chunksOf(toLinear16(audio));
      for (const [index, chunk] of chunks.entries()) {
        await client.transcription.appendSessionAudio({ sessionId, sequenceNumber: index + 1, audio: chunk });
      }
      // A call that cannot finish holds the drain open until the flush budget is over, so that the
      // server still answers appends once the session has ended.
      const stalled = await stalledSynthesis(t.address);
      // No grace: every chunk acknowledged is still transcribed.
      const stopping = t.stop(0, 3000);
      const error = await expectError(events.done);
      const late = await expectError(
        client.transcription.appendSessionAudio({
          sessionId,
          sequenceNumber: chunks.length + 1,
          audio: chunks[0]!,
        }),
      );
      assert.equal(late.code, Code.NotFound, late.rawMessage);
      assert.equal(reasonOf(late), 'SESSION_NOT_FOUND');
      assert.match(late.rawMessage, /has ended: the server is shutting down/);
      stalled.close();
      assert.equal(error.code, Code.Unavailable, error.rawMessage);
      assert.equal(reasonOf(error), 'DRAINING');
      assert.equal(processedMsOf(error), analysedMs(audio.length));
      const finals = finalsOf(events.seen);
      assert.equal(finals.length, 1);
      assert.equal(finals[0]?.text, MODEL_TEXT);
      await stopping;
    } finally {
      client.close();
      await t.stop();
    }
  });
});

/** The context of a call made to a handler directly, which `finish` tells to finish as a drain would. */
function inProcessContext(t: TestServer, finish: AbortSignal, requestId: string): CallContext {
  return {
    signal: new AbortController().signal,
    finishSignal: finish,
    deadline: undefined,
    metadata: new Map(),
    peer: 'test',
    requestId,
    logger: createLogger(t.config.logging, { destination: captureLogs().stream }),
  };
}
