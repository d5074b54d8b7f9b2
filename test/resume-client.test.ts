import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { VOICE_ERROR_DOMAIN } from '../clients/common/errors.js';
import { createHeldAudio } from '../clients/common/held-audio.js';
import { createResumeEventFilter } from '../clients/common/resume-events.js';
import { retryDelayMs } from '../clients/common/retry-policy.js';
import { TranscribeResponseSchema } from '../server/gen/cortex/voice/v1/transcription_pb.js';
import { ErrorInfoSchema, RetryInfoSchema } from '../server/gen/google/rpc/error_details_pb.js';
import { COMMIT_INTERVAL_MS, createAudioCommits, gridMs } from '../server/service/audio-commits.js';

describe('held audio of a resumable stream', () => {
  test('drops what is committed, keeping chunk numbers, split chunks from the commit point', () => {
    // 1 kHz mono LINEAR16: 2 bytes a millisecond, timeline from 1000 ms.
    const held = createHeldAudio({ frameBytes: 2, sampleRate: 1000, originMs: 1000, maxHeldMs: 100 });
    for (let i = 0; i < 4; i++) held.push(new Uint8Array(20).fill(i));
    assert.deepEqual([held.first, held.next], [0, 4]);
    held.commit(1015);
    assert.equal(held.first, 1);
    assert.deepEqual([...(held.at(1) ?? [])], new Array(10).fill(1), 'the rest of chunk 1, from 1015 ms');
    held.commit(900);
    assert.equal(held.first, 1, 'a point behind the held audio changes nothing');
    held.commit(1040);
    assert.deepEqual([held.first, held.next], [4, 4]);
  });

  test('refuses more than maxHeldMs with RESOURCE_EXHAUSTED naming the option', () => {
    const held = createHeldAudio({ frameBytes: 4, sampleRate: 16_000, originMs: 0, maxHeldMs: 100 });
    held.push(new Uint8Array(6400));
    const error = assert.throws(
      () => held.push(new Uint8Array(4)),
      (e: unknown) => {
        assert.ok(e instanceof ConnectError);
        assert.equal(e.code, Code.ResourceExhausted);
        assert.match(e.rawMessage, /maxHeldAudioMs \(100\)/);
        return true;
      },
    );
    void error;
  });
});

describe('resume event filter', () => {
  const response = (event: Parameters<typeof create<typeof TranscribeResponseSchema>>[1]) =>
    create(TranscribeResponseSchema, event);
  test('passes each speech event and final once, interims only as they grow, commits as they advance', () => {
    const filter = createResumeEventFilter();
    const stream = [
      response({ event: { case: 'speechStarted', value: { utteranceIndex: 0, offsetMs: 100 } } }),
      response({ event: { case: 'result', value: { utteranceIndex: 0, endMs: 600, text: 'a' } } }),
      // A resumed stream recomputes utterance 0:
      response({ event: { case: 'speechStarted', value: { utteranceIndex: 0, offsetMs: 100 } } }),
      response({ event: { case: 'result', value: { utteranceIndex: 0, endMs: 500, text: 'a' } } }),
      response({ event: { case: 'result', value: { utteranceIndex: 0, endMs: 900, text: 'ab' } } }),
      response({ event: { case: 'speechEnded', value: { utteranceIndex: 0, offsetMs: 1000 } } }),
      response({ event: { case: 'result', value: { utteranceIndex: 0, endMs: 1000, isFinal: true } } }),
      response({ event: { case: 'result', value: { utteranceIndex: 0, endMs: 1000, isFinal: true } } }),
      response({ event: { case: 'audioCommitted', value: { offsetMs: 1504n, nextUtteranceIndex: 1 } } }),
      response({ event: { case: 'audioCommitted', value: { offsetMs: 1504n, nextUtteranceIndex: 1 } } }),
    ];
    const passed = stream.map((r) => filter.pass(r) !== undefined);
    assert.deepEqual(passed, [true, true, false, false, true, true, true, false, true, false]);
  });
});

describe('resume retry policy', () => {
  const error = (
    code: Code,
    {
      reason,
      pushbackMs,
      message = 'x',
      trailers = {},
    }: { reason?: string; pushbackMs?: number; message?: string; trailers?: Record<string, string> } = {},
  ) => {
    const metadata: Record<string, string> = { ...trailers };
    if (pushbackMs !== undefined) metadata['grpc-retry-pushback-ms'] = String(pushbackMs);
    const failure = new ConnectError(message, code, metadata);
    if (reason !== undefined) {
      failure.details.push({ desc: ErrorInfoSchema, value: { reason, domain: VOICE_ERROR_DOMAIN } });
    }
    return failure;
  };
  test('retries UNAVAILABLE, CANCELLED, connection resets and OVER_CAPACITY with a delay, honouring pushback', () => {
    assert.equal(retryDelayMs(error(Code.Unavailable, { reason: 'DRAINING' }), 100), 100);
    assert.equal(retryDelayMs(error(Code.Unavailable, { pushbackMs: 750 }), 100), 750);
    assert.equal(retryDelayMs(error(Code.Canceled), 200), 200);
    assert.equal(retryDelayMs(error(Code.Aborted, { message: 'read ECONNRESET' }), 100), 100);
    assert.equal(
      retryDelayMs(error(Code.ResourceExhausted, { reason: 'OVER_CAPACITY', pushbackMs: 2000 }), 100),
      2000,
    );
  });

  test('reads the reason from ErrorInfo and the delay from RetryInfo as decoded off the wire', () => {
    const failure = new ConnectError('full', Code.ResourceExhausted);
    // As connect decodes them from grpc-status-details-bin: type names and bytes.
    const wire = [
      {
        type: ErrorInfoSchema.typeName,
        value: toBinary(
          ErrorInfoSchema,
          create(ErrorInfoSchema, { reason: 'OVER_CAPACITY', domain: VOICE_ERROR_DOMAIN }),
        ),
      },
      {
        type: RetryInfoSchema.typeName,
        value: toBinary(
          RetryInfoSchema,
          create(RetryInfoSchema, { retryDelay: { seconds: 1n, nanos: 500_000_000 } }),
        ),
      },
    ];
    failure.details.push(...wire);
    assert.equal(retryDelayMs(failure, 100), 1500);
  });

  test('does not retry what a retry cannot fix', () => {
    assert.equal(retryDelayMs(error(Code.InvalidArgument), 100), undefined);
    assert.equal(retryDelayMs(error(Code.ResourceExhausted, { reason: 'LIMIT_EXCEEDED' }), 100), undefined);
    // OVER_CAPACITY without a retry delay: the server did not say when.
    assert.equal(retryDelayMs(error(Code.ResourceExhausted, { reason: 'OVER_CAPACITY' }), 100), undefined);
    // An INTERNAL status the server sent (it has grpc-status), not a connection lost mid-stream.
    assert.equal(
      retryDelayMs(
        error(Code.Internal, { message: 'internal error', trailers: { 'grpc-status': '13' } }),
        100,
      ),
      undefined,
    );
  });
});

describe('commit points', () => {
  test('the grid is whole VAD frames and whole input samples', () => {
    assert.equal(gridMs(16_000, 32), 32);
    assert.equal(gridMs(48_000, 32), 32);
    assert.equal(gridMs(44_100, 32), 160);
    assert.equal(gridMs(22_050, 32), 160);
    assert.equal(gridMs(11_025, 32), 160);
  });

  test('the VAD restarts once a quiet spell, then every interval; a point is sent once its finals are', () => {
    const commits = createAudioCommits({
      originMs: 0,
      firstUtteranceIndex: 0,
      frameSamples: 512,
      speechPadMs: 200,
      inputRate: () => 16_000,
    });
    const frame = (ms: number) => ms * 16;
    // An utterance (index 0) ended; quiet from 2048 ms.
    assert.equal(commits.restartAt(frame(2048), frame(2048)), true);
    assert.equal(commits.restartAt(frame(2080), frame(2048)), false, 'once per spell');
    // 200 ms of padding past it analysed, but final 0 not sent yet: nothing due.
    assert.equal(commits.analysed(frame(2272), frame(2048), 1), undefined);
    assert.deepEqual(commits.finalSent(0), { offsetMs: 2048, nextUtteranceIndex: 1 });
    // The first frame at least an interval on.
    const next = Math.ceil((2048 + COMMIT_INTERVAL_MS) / 32) * 32;
    assert.equal(commits.restartAt(frame(next - 32), frame(2048)), false);
    assert.equal(commits.restartAt(frame(next), frame(2048)), true, 'one interval on');
    assert.deepEqual(commits.analysed(frame(next + 224), frame(2048), 1), {
      offsetMs: next,
      nextUtteranceIndex: 1,
    });
    // The end: whole milliseconds of whole samples.
    assert.deepEqual(commits.end(16_000 * 10 + 7, 1), { offsetMs: 10_000, nextUtteranceIndex: 1 });
  });
});
