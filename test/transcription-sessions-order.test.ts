import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code } from '@connectrpc/connect';
import { Reason, VoiceError } from '../server/errors.js';
import {
  ANONYMOUS_OWNER,
  createTranscriptionSessions,
  type SessionClock,
  type TranscriptionSessionOptions,
} from '../server/service/transcription-sessions.js';
import { createSequenceBuffer, type SessionChunk } from '../server/service/transcription-sessions-order.js';

/** A clock that moves only when told, firing the timers that fall due on the way. */
function manualClock(): SessionClock & { advance(ms: number): void; readonly pending: number } {
  let time = 0;
  const timers = new Set<{ at: number; callback: () => void }>();
  return {
    now: () => time,
    schedule(ms, callback) {
      const timer = { at: time + ms, callback };
      timers.add(timer);
      return () => timers.delete(timer);
    },
    advance(ms) {
      const until = time + ms;
      while (true) {
        const due = [...timers].filter((timer) => timer.at <= until).sort((a, b) => a.at - b.at)[0];
        if (due === undefined) break;
        timers.delete(due);
        time = due.at;
        due.callback();
      }
      time = until;
    },
    get pending() {
      return timers.size;
    },
  };
}

const bytes = (...values: number[]) => Uint8Array.from(values);
const chunk = (value: number, end = false): SessionChunk => ({ audio: bytes(value), end });
const values = (chunks: readonly SessionChunk[]) => chunks.map((item) => item.audio[0]);

function isVoiceError(code: Code, reason: string, message?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof VoiceError, `a VoiceError, got ${String(error)}`);
    assert.equal(error.code, code, error.rawMessage);
    assert.equal(error.reason, reason);
    if (message) assert.match(error.rawMessage, message);
    return true;
  };
}

describe('session sequence buffer', () => {
  const buffer = (clock = manualClock()) =>
    createSequenceBuffer({ gapTimeoutMs: 2000, maxHeldChunks: 4, now: clock.now });

  it('applies chunks that come in order at once and says through which number', () => {
    const order = buffer();
    assert.equal(order.acceptedThrough, 0);
    assert.deepEqual(order.accept(1, chunk(1)), { kind: 'applied', chunks: [chunk(1)] });
    assert.deepEqual(order.accept(2, chunk(2)), { kind: 'applied', chunks: [chunk(2)] });
    assert.equal(order.acceptedThrough, 2);
    assert.equal(order.gap, undefined);
  });

  it('holds early chunks and applies them in order with the missing one', () => {
    const order = buffer();
    order.accept(1, chunk(1));
    assert.deepEqual(order.accept(4, chunk(4)), { kind: 'held' });
    assert.deepEqual(order.accept(3, chunk(3)), { kind: 'held' });
    assert.equal(order.acceptedThrough, 1);
    assert.equal(order.gap?.missing, 2);
    const arrival = order.accept(2, chunk(2));
    assert.equal(arrival.kind, 'applied');
    assert.deepEqual(arrival.kind === 'applied' && values(arrival.chunks), [2, 3, 4]);
    assert.equal(order.acceptedThrough, 4);
    assert.equal(order.gap, undefined);
  });

  it('acknowledges and ignores a repeated number, applied or held', () => {
    const order = buffer();
    order.accept(1, chunk(1));
    order.accept(3, chunk(3));
    assert.deepEqual(order.accept(1, chunk(9)), { kind: 'repeated' });
    assert.deepEqual(order.accept(3, chunk(9)), { kind: 'repeated' });
    const arrival = order.accept(2, chunk(2));
    assert.deepEqual(arrival.kind === 'applied' && values(arrival.chunks), [2, 3]);
  });

  it('gives up on a missing chunk the gap timeout after the oldest held one arrived', () => {
    const clock = manualClock();
    const order = buffer(clock);
    order.accept(1, chunk(1));
    clock.advance(100);
    order.accept(3, chunk(3));
    clock.advance(500);
    order.accept(5, chunk(5));
    assert.deepEqual(order.gap, { missing: 2, deadline: 2100 });
    // Chunk 2 fills the first gap; chunk 4 has been missing since chunk 5 arrived.
    order.accept(2, chunk(2));
    assert.deepEqual(order.gap, { missing: 4, deadline: 2600 });
  });

  it('ends once the chunk marked end_of_audio and every chunk before it are applied', () => {
    const order = buffer();
    order.accept(1, chunk(1));
    order.accept(3, chunk(3, true));
    assert.equal(order.complete, false);
    order.accept(2, chunk(2));
    assert.equal(order.complete, true);
    assert.deepEqual(order.accept(3, chunk(3, true)), { kind: 'repeated' }, 'a retried end is acknowledged');
  });

  it('refuses number 0, a number past the end, an end before a later chunk, and a chunk too far ahead', () => {
    const order = buffer();
    assert.throws(
      () => order.accept(0, chunk(0)),
      isVoiceError(
        Code.InvalidArgument,
        Reason.InvalidArgument,
        /sequence_number: 0 is not valid; chunks are numbered from 1/,
      ),
    );
    order.accept(1, chunk(1));
    order.accept(4, chunk(4));
    assert.throws(
      () => order.accept(3, chunk(3, true)),
      isVoiceError(
        Code.FailedPrecondition,
        Reason.OutOfOrder,
        /chunk 3 cannot end the session's audio, chunk 4 was already received/,
      ),
    );
    assert.throws(
      () => order.accept(7, chunk(7)),
      isVoiceError(
        Code.ResourceExhausted,
        Reason.LimitExceeded,
        /7 is 5 chunks ahead of the next expected one \(2\); a session holds at most 4/,
      ),
    );
    order.accept(5, chunk(5, true));
    assert.throws(
      () => order.accept(6, chunk(6)),
      isVoiceError(
        Code.FailedPrecondition,
        Reason.OutOfOrder,
        /6 is past the end of the session's audio, which chunk 5 marked/,
      ),
    );
  });
});

describe('session registry timers and ownership', () => {
  const OWNER = 'caller:key-a';
  const registry = (clock: SessionClock, overrides: Partial<TranscriptionSessionOptions> = {}) =>
    createTranscriptionSessions({
      gapTimeoutMs: 2000,
      idleTimeoutMs: 10_000,
      maxPerCaller: 2,
      maxChunkBytes: 1024,
      endedRetentionMs: 60_000,
      clock,
      ...overrides,
    });
  const append = (
    sequenceNumber: number,
    sessionId: string,
    audio = bytes(sequenceNumber),
    endOfAudio = false,
  ) => ({
    sessionId,
    sequenceNumber,
    audio,
    endOfAudio,
  });
  const live = () => new AbortController().signal;

  async function collect(audio: AsyncIterable<Uint8Array>): Promise<number[]> {
    const out: number[] = [];
    for await (const item of audio) out.push(...item);
    return out;
  }

  it('feeds the audio in sequence order and ends it after the chunk marked end_of_audio', async () => {
    const sessions = registry(manualClock());
    const session = sessions.open(OWNER, live());
    const read = collect(session.audio);
    assert.equal(await sessions.append(OWNER, append(2, session.id), live()), 0);
    assert.equal(await sessions.append(OWNER, append(1, session.id), live()), 2);
    assert.equal(await sessions.append(OWNER, append(1, session.id), live()), 2, 'a retry is acknowledged');
    assert.equal(await sessions.append(OWNER, append(3, session.id, bytes(), true), live()), 3);
    assert.deepEqual(await read, [1, 2]);
    session[Symbol.dispose]();
    assert.equal(
      await sessions.append(OWNER, append(3, session.id), live()),
      3,
      'a late retry is still acknowledged',
    );
    await assert.rejects(
      sessions.append(OWNER, append(4, session.id), live()),
      isVoiceError(Code.NotFound, Reason.SessionNotFound, /has ended: its audio ended/),
    );
  });

  it('fails the session with FAILED_PRECONDITION naming the missing number once the gap timeout passes', async () => {
    const clock = manualClock();
    const sessions = registry(clock);
    const session = sessions.open(OWNER, live());
    const read = collect(session.audio);
    await sessions.append(OWNER, append(1, session.id), live());
    await sessions.append(OWNER, append(3, session.id), live());
    clock.advance(1999);
    assert.equal(sessions.size, 1, 'still waiting for chunk 2');
    clock.advance(1);
    const gap = isVoiceError(
      Code.FailedPrecondition,
      Reason.OutOfOrder,
      /chunk 2 \(sequence_number\) did not arrive within 2000 ms .*service\.sessions\.gap_timeout_ms/,
    );
    await assert.rejects(read, gap);
    assert.equal(sessions.size, 0);
    await assert.rejects(sessions.append(OWNER, append(2, session.id), live()), gap);
    clock.advance(60_000);
    await assert.rejects(
      sessions.append(OWNER, append(2, session.id), live()),
      isVoiceError(Code.NotFound, Reason.SessionNotFound, /no transcription session/),
    );
    assert.equal(clock.pending, 0, 'no timer is left behind');
  });

  it('ends a session that gets no new chunk for the idle timeout; repeats do not count as new', async () => {
    const clock = manualClock();
    const sessions = registry(clock);
    const session = sessions.open(OWNER, live());
    const read = collect(session.audio);
    clock.advance(9000);
    await sessions.append(OWNER, append(1, session.id), live());
    clock.advance(9000);
    await sessions.append(OWNER, append(1, session.id), live());
    assert.equal(sessions.size, 1);
    clock.advance(1000);
    await assert.rejects(
      read,
      isVoiceError(
        Code.DeadlineExceeded,
        Reason.SessionIdle,
        /no new audio chunk for 10000 ms \(service\.sessions\.idle_timeout_ms\)/,
      ),
    );
    await assert.rejects(
      sessions.append(OWNER, append(2, session.id), live()),
      isVoiceError(Code.NotFound, Reason.SessionNotFound, /no new audio chunk came for 10000 ms/),
    );
  });

  it('lets only the owner append: another caller, or an anonymous one, gets PERMISSION_DENIED', async () => {
    const sessions = registry(manualClock());
    const keyed = sessions.open(OWNER, live());
    const anonymous = sessions.open(ANONYMOUS_OWNER, live());
    const denied = isVoiceError(Code.PermissionDenied, Reason.PermissionDenied, /belongs to another caller/);
    await assert.rejects(sessions.append('caller:key-b', append(1, keyed.id), live()), denied);
    await assert.rejects(sessions.append(ANONYMOUS_OWNER, append(1, keyed.id), live()), denied);
    await assert.rejects(sessions.append(OWNER, append(1, anonymous.id), live()), denied);
    assert.equal(await sessions.append(ANONYMOUS_OWNER, append(1, anonymous.id), live()), 1);
    await assert.rejects(
      sessions.append(OWNER, append(1, 'no-such-session'), live()),
      isVoiceError(Code.NotFound, Reason.SessionNotFound, /no transcription session "no-such-session"/),
    );
  });

  it('ends the session when its stream is cancelled: the audio stops and appends get NOT_FOUND', async () => {
    const sessions = registry(manualClock());
    const stream = new AbortController();
    const session = sessions.open(OWNER, stream.signal);
    const read = collect(session.audio);
    stream.abort(new VoiceError(Reason.Cancelled, 'the client cancelled the call'));
    await assert.rejects(read, isVoiceError(Code.Canceled, Reason.Cancelled));
    await assert.rejects(
      sessions.append(OWNER, append(1, session.id), live()),
      isVoiceError(
        Code.NotFound,
        Reason.SessionNotFound,
        /its stream ended \(the client cancelled the call\)/,
      ),
    );
    assert.equal(sessions.size, 0);
  });

  it('limits the sessions one owner has open and refuses chunks over the size limit', async () => {
    const sessions = registry(manualClock());
    const first = sessions.open(OWNER, live());
    sessions.open(OWNER, live());
    assert.throws(
      () => sessions.open(OWNER, live()),
      isVoiceError(
        Code.ResourceExhausted,
        Reason.RateLimited,
        /already has 2 transcription sessions open \(service\.sessions\.max_per_caller\)/,
      ),
    );
    sessions.open('caller:key-b', live());
    first[Symbol.dispose]();
    sessions.open(OWNER, live());
    const other = sessions.open(ANONYMOUS_OWNER, live());
    await assert.rejects(
      sessions.append(ANONYMOUS_OWNER, append(1, other.id, new Uint8Array(1025)), live()),
      isVoiceError(
        Code.ResourceExhausted,
        Reason.LimitExceeded,
        /1025 bytes is larger than performance\.max_audio_chunk_bytes \(1024\)/,
      ),
    );
    assert.equal(
      await sessions.append(ANONYMOUS_OWNER, append(1, other.id), live()),
      1,
      'the session lives on',
    );
  });

  it('answers an append once the pipeline has room for more audio', async () => {
    const sessions = registry(manualClock(), { maxQueuedChunks: 2 });
    const session = sessions.open(OWNER, live());
    await sessions.append(OWNER, append(1, session.id), live());
    let answered = false;
    const second = sessions.append(OWNER, append(2, session.id), live()).then((through) => {
      answered = true;
      return through;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(answered, false, 'two chunks wait for the pipeline');
    const iterator = session.audio[Symbol.asyncIterator]();
    await iterator.next();
    assert.equal(await second, 2);
  });
});
