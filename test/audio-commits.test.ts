import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AudioEncoding, Code, type TranscribeResponse } from '../clients/node/index.js';
import { createResampler } from '../server/pipeline/resample.js';
import { expectError } from './helpers/errors.js';
import { collect, commitsOf, lines, requestsOf, speechWithPauses } from './helpers/resume.js';
import { concat, RATE, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

const LINEAR16_16K = { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 };
const BYTES_PER_MS = (RATE / 1000) * 2;

describe('AudioCommitted and resumed streams', () => {
  let t: TestServer;
  let audio: Uint8Array;
  let whole: TranscribeResponse[];
  const config = { audioFormat: LINEAR16_16K, language: 'en' };

  before(async () => {
    t = await startServerWithEngines({ performance: { workers: 2 } });
    audio = toLinear16(speechWithPauses());
    whole = await collect(t.client.transcription.transcribe(requestsOf(config, audio)));
  });
  after(() => t.stop());

  it('commits points that advance, on the frame and sample grid, never inside an undelivered utterance', () => {
    const commits = commitsOf(whole);
    const starts = new Map<number, number>();
    for (const response of whole) {
      if (response.event.case === 'speechStarted')
        starts.set(response.event.value.utteranceIndex, response.event.value.offsetMs);
    }
    const finals = whole.flatMap((response, at) =>
      response.event.case === 'result' && response.event.value.isFinal
        ? [{ ...response.event.value, at }]
        : [],
    );
    assert.equal(finals.length, 4, lines(whole).join('\n'));
    assert.ok(commits.length >= 5, `commits: ${JSON.stringify(commits)}`);
    const durationMs = audio.length / BYTES_PER_MS;
    commits.forEach((commit, index) => {
      const previous = commits[index - 1];
      if (previous) {
        assert.ok(commit.offsetMs > previous.offsetMs, `offsets advance: ${JSON.stringify(commits)}`);
        assert.ok(commit.nextUtteranceIndex >= previous.nextUtteranceIndex);
      }
      const last = index === commits.length - 1;
      if (!last) assert.equal(commit.offsetMs % 32, 0, `on the 32 ms frame grid: ${commit.offsetMs}`);
      // Every final below the index was sent before the commit; none of the later ones was.
      const sent = finals.filter((final) => final.at < commit.at).map((final) => final.utteranceIndex);
      assert.deepEqual(
        sent,
        Array.from({ length: commit.nextUtteranceIndex }, (_, i) => i),
      );
      const done = finals[commit.nextUtteranceIndex - 1];
      if (done) assert.ok(commit.offsetMs >= done.endMs, `past final ${done.utteranceIndex}'s end`);
      for (const [utterance, startMs] of starts) {
        if (utterance >= commit.nextUtteranceIndex)
          assert.ok(commit.offsetMs <= startMs, `before utterance ${utterance} starts (${startMs})`);
      }
    });
    assert.equal(commits.at(-1)?.offsetMs, Math.floor(durationMs), 'the end of the audio is committed last');
    assert.equal(commits.at(-1)?.nextUtteranceIndex, 4);
    assert.equal(whole.at(-1)?.event.case, 'audioCommitted');
    // One after each final followed by enough silence (the 0.4 s pause ends utterance 1 too soon
    // for one before utterance 2 starts), and one every 5 s of the long silence.
    for (const utterance of [1, 3, 4]) {
      assert.ok(
        commits.some((commit) => commit.nextUtteranceIndex === utterance),
        `a commit after final ${utterance - 1}: ${JSON.stringify(commits)}`,
      );
    }
    const inLongSilence = commits.filter((commit) => commit.nextUtteranceIndex === 3);
    assert.ok(inLongSilence.length >= 2, `commits in the long silence: ${JSON.stringify(commits)}`);
  });

  it('a stream resumed from any commit point gives the same later events, recognising nothing twice', async () => {
    const commits = commitsOf(whole).slice(0, -1);
    for (const commit of commits) {
      const resumed = await collect(
        t.client.transcription.transcribe(
          requestsOf(
            {
              ...config,
              resume: { offsetMs: BigInt(commit.offsetMs), nextUtteranceIndex: commit.nextUtteranceIndex },
            },
            audio.subarray(commit.offsetMs * BYTES_PER_MS),
            4800,
          ),
        ),
      );
      assert.deepEqual(
        lines(resumed),
        lines(whole, commit.nextUtteranceIndex),
        `resumed at ${commit.offsetMs} ms, utterance ${commit.nextUtteranceIndex}`,
      );
      assert.equal(commitsOf(resumed).at(-1)?.offsetMs, Math.floor(audio.length / BYTES_PER_MS));
    }
  });

  it('a 44.1 kHz stream resumed from its commit points gives the same later events (resampler restarted)', async () => {
    const resampler = await createResampler(RATE, 44_100);
    const samples44k = concat(resampler.push(speechWithPauses()), resampler.flush());
    resampler.close();
    const format = { encoding: AudioEncoding.FLOAT32, sampleRateHz: 44_100, channels: 1 };
    const bytes = new Uint8Array(samples44k.buffer);
    const reference = await collect(
      t.client.transcription.transcribe(requestsOf({ audioFormat: format }, bytes, 17_640)),
    );
    const commits = commitsOf(reference).slice(0, -1);
    assert.ok(commits.length >= 3, JSON.stringify(commits));
    for (const commit of commits) {
      assert.equal(commit.offsetMs % 160, 0, `whole frames and whole 44.1 kHz samples: ${commit.offsetMs}`);
      const resumed = await collect(
        t.client.transcription.transcribe(
          requestsOf(
            {
              audioFormat: format,
              resume: { offsetMs: BigInt(commit.offsetMs), nextUtteranceIndex: commit.nextUtteranceIndex },
            },
            bytes.subarray((commit.offsetMs * 44_100 * 4) / 1000),
            17_640,
          ),
        ),
      );
      assert.deepEqual(
        lines(resumed),
        lines(reference, commit.nextUtteranceIndex),
        `resumed at ${commit.offsetMs} ms`,
      );
    }
  });

  it('a session resumed from a commit point gives the same later events, with its commit points', async () => {
    const commit = commitsOf(whole).find((point) => point.nextUtteranceIndex === 3);
    assert.ok(commit, 'a commit point in the long silence');
    const resumed = await sessionEvents(
      t,
      {
        ...config,
        resume: { offsetMs: BigInt(commit.offsetMs), nextUtteranceIndex: commit.nextUtteranceIndex },
      },
      audio.subarray(commit.offsetMs * BYTES_PER_MS),
    );
    assert.deepEqual(lines(resumed), lines(whole, 3));
    const commits = commitsOf(resumed);
    assert.ok(commits.length >= 2, JSON.stringify(commits));
    assert.ok(commits.every((point) => point.offsetMs > commit.offsetMs));
    assert.equal(commits.at(-1)?.offsetMs, Math.floor(audio.length / BYTES_PER_MS));
  });

  it('refuses resume points that cannot be continued, naming the field', async () => {
    const cases = [
      {
        config: { ...config, resume: { offsetMs: 2n ** 31n + 1n } },
        field: 'config.resume.offset_ms',
        allowed: /allowed 0 to 2147483648/,
      },
      {
        config: {
          audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: 44_100, channels: 1 },
          resume: { offsetMs: 1001n },
        },
        field: 'config.resume.offset_ms',
        allowed: /not a whole number of samples at 44100 Hz/,
      },
      {
        config: { audioFormat: { encoding: AudioEncoding.WAV }, resume: { offsetMs: 960n } },
        field: 'config.resume',
        allowed: /requires raw PCM/,
      },
    ];
    for (const { config: bad, field, allowed } of cases) {
      const error = await expectError(
        collect(t.client.transcription.transcribe(requestsOf(bad, audio.subarray(0, 3200)))),
      );
      assert.equal(error.code, Code.InvalidArgument);
      assert.ok(error.rawMessage.startsWith(`${field}:`), error.rawMessage);
      assert.match(error.rawMessage, allowed);
    }
    const session = await expectError(
      collect(
        t.client.transcription.startTranscriptionSession({
          config: { ...config, resume: { offsetMs: 2n ** 40n } },
        }),
      ),
    );
    assert.equal(session.code, Code.InvalidArgument, 'sessions check resume the same way');
    assert.match(session.rawMessage, /^config\.resume\.offset_ms: /);
  });
});

/** Every event of a StartTranscriptionSession stream fed `audio` through AppendSessionAudio. */
async function sessionEvents(
  t: TestServer,
  config: Parameters<TestServer['client']['transcription']['startTranscriptionSession']>[0]['config'],
  audio: Uint8Array,
): Promise<TranscribeResponse[]> {
  const iterator = t.client.transcription.startTranscriptionSession({ config })[Symbol.asyncIterator]();
  const first = await iterator.next();
  const sessionId = first.done ? '' : (first.value.sessionStarted?.sessionId ?? '');
  assert.notEqual(sessionId, '', 'the stream names its session');
  const events = (async () => {
    const out: TranscribeResponse[] = [];
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) out.push(next.value);
    return out;
  })();
  const chunk = 16_000;
  const count = Math.ceil(audio.length / chunk);
  for (let index = 0; index < count; index += 1) {
    await t.client.transcription.appendSessionAudio({
      sessionId,
      sequenceNumber: index + 1,
      audio: audio.subarray(index * chunk, (index + 1) * chunk),
      endOfAudio: index === count - 1,
    });
  }
  return events;
}
