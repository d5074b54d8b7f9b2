import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reason, VoiceError } from '../server/errors.js';
import { createTranscriptionSessions } from '../server/service/transcription-sessions.js';

const smallRegistry = () =>
  createTranscriptionSessions({
    gapTimeoutMs: 1000,
    idleTimeoutMs: 10_000,
    maxPerCaller: 5,
    maxChunkBytes: 1024,
  });

describe('drain: the session registry hook', () => {
  it('finish(): no chunk is applied after it, those applied are still read, later appends get its error', async () => {
    const sessions = smallRegistry();
    const session = sessions.open('owner', new AbortController().signal);
    const signal = new AbortController().signal;
    const chunk = (sequenceNumber: number) => ({
      sessionId: session.id,
      sequenceNumber,
      audio: new Uint8Array([sequenceNumber]),
      endOfAudio: false,
    });
    assert.equal(await sessions.append('owner', chunk(1), signal), 1);
    assert.equal(await sessions.append('owner', chunk(2), signal), 2);
    const drained = new VoiceError(Reason.SessionNotFound, 'drained');
    assert.equal(session.finish(drained), true, 'the audio was cut');
    await assert.rejects(sessions.append('owner', chunk(3), signal), drained);
    const read: number[] = [];
    for await (const audio of session.audio) read.push(audio[0]!);
    assert.deepEqual(read, [1, 2]);
    assert.equal(sessions.size, 0);
    assert.equal(session.finish(drained), false, 'a second finish changes nothing');
  });

  it('finish() after the audio was complete cuts nothing', async () => {
    const sessions = smallRegistry();
    const session = sessions.open('owner', new AbortController().signal);
    const last = { sessionId: session.id, sequenceNumber: 1, audio: new Uint8Array([1]), endOfAudio: true };
    await sessions.append('owner', last, new AbortController().signal);
    assert.equal(session.finish(new VoiceError(Reason.SessionNotFound, 'drained')), false);
  });
});
