import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  AudioEncoding,
  type SynthesizeRequestSchema,
  type SynthesizeResponse,
} from '../clients/node/index.js';
import { createEspeakSynthesizer, type EspeakSynthesizer } from '../server/engines/espeak-ng.js';
import type { SpeechSynthesizer, VoiceInfo } from '../server/engines/types.js';
import { Reason, VoiceError } from '../server/errors.js';
import type { SynthesisSettings } from '../server/service/synthesis-config.js';
import {
  type SynthesizeResponseInit,
  type SynthesizeSessionDeps,
  synthesizeStream,
  type TextInput,
} from '../server/service/synthesize-session.js';
import { createRequestQueue } from './helpers/request-queue.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

/**
 * Barge-in on a Synthesize stream (real server on 127.0.0.1, worker pools, Node client): a Clear
 * stops the audio, is answered with exactly what was heard, and the stream goes on.
 */

type Request = MessageInitShape<typeof SynthesizeRequestSchema>;

const REPLY = [
  'Sure, I can help you plan the trip to the mountains this weekend.',
  'The weather looks clear on Saturday, with light wind in the afternoon.',
  'You should leave early, because the roads get busy after nine.',
  'Pack warm layers, some water, and a map in case the phone signal drops.',
].join(' ');

/** Runs a call, handing each response to `onResponse` as it arrives; resolves with all of them. */
function call(
  t: TestServer,
  queue: ReturnType<typeof createRequestQueue<Request>>,
  onResponse: (r: SynthesizeResponse) => void,
) {
  const received: SynthesizeResponse[] = [];
  const done = (async () => {
    for await (const response of t.client.synthesis.synthesize(queue)) {
      received.push(response);
      onResponse(response);
    }
    return received;
  })();
  return done;
}

const codePoints = (text: string, start: number, end: number) => [...text].slice(start, end).join('');

describe('barge-in (Clear)', () => {
  let t: TestServer;
  before(async () => {
    t = await startServerWithEngines({ security: { rate_limit: { enabled: false } } });
  });
  after(() => t?.stop());

  for (const rate of [0, 16_000]) {
    it(`stops the audio, answers with the words heard up to the played position, then speaks new text (${rate === 0 ? 'native rate' : `resampled to ${rate} Hz`})`, async () => {
      const queue = createRequestQueue<Request>();
      queue.push({
        request: {
          case: 'config',
          value: { voice: 'espeak:en-us', encoding: AudioEncoding.LINEAR16, sampleRateHz: rate },
        },
      });
      queue.push({ request: { case: 'text', value: REPLY } });
      let cleared = false;
      let played = 0;
      const responses = await call(t, queue, (response) => {
        // After the second chunk, the listener interrupts 0.4 s into the second chunk.
        if (!cleared && response.sequenceNumber === 1) {
          cleared = true;
          played = Number(response.sampleOffset) + Math.round(0.4 * (response.format?.sampleRateHz ?? 0));
          queue.push({ request: { case: 'clear', value: { playedSamples: BigInt(played) } } });
        }
        if (response.interruption !== undefined) {
          queue.push({ request: { case: 'text', value: ' Okay, stopping.' } });
          queue.end();
        }
      });

      const answerAt = responses.findIndex((r) => r.interruption !== undefined);
      const metrics = await (await fetch(t.metricsUrl)).text();
      assert.match(metrics, /^voice_tts_interruptions_total [1-9]/m, 'the clear is counted');
      assert.ok(answerAt >= 2, `the answer comes after the audio sent (${answerAt})`);
      const answer = responses[answerAt] as SynthesizeResponse;
      const interruption = answer.interruption;
      assert.ok(interruption);
      assert.equal(answer.sampleCount, 0);
      assert.equal(answer.audio.length, 0);

      // Gapless numbering and offsets across the audio sent, the answer and the new text.
      let offset = 0;
      for (const [i, r] of responses.entries()) {
        assert.equal(r.sequenceNumber, i);
        assert.equal(Number(r.sampleOffset), offset);
        offset += r.sampleCount;
      }
      const sentBefore = responses.slice(0, answerAt).reduce((sum, r) => sum + r.sampleCount, 0);
      assert.equal(Number(interruption.sentSamples), sentBefore);
      assert.equal(Number(interruption.playedSamples), played);

      // Heard: every word whose audio began before the played position, and no other.
      const wordsSent = new Map<string, { start: number; end: number; span: [number, number] }>();
      for (const r of responses.slice(0, answerAt)) {
        for (const w of r.words) {
          wordsSent.set(`${w.startSample}`, {
            start: Number(w.startSample),
            end: Number(w.endSample),
            span: [w.textSpan?.start ?? 0, w.textSpan?.end ?? 0],
          });
        }
      }
      const expectedHeard = [...wordsSent.values()]
        .filter((w) => w.start < played)
        .sort((a, b) => a.start - b.start);
      assert.deepEqual(
        interruption.heardWords.map((w) => [w.textSpan?.start, w.textSpan?.end]),
        expectedHeard.map((w) => w.span),
      );
      const last = expectedHeard.at(-1);
      assert.ok(last);
      assert.equal(interruption.heardSpan?.start, 0);
      assert.equal(interruption.heardSpan?.end, last.span[1]);
      assert.equal(interruption.heardText, codePoints(REPLY, 0, last.span[1]));
      assert.equal(interruption.lastWordComplete, last.end <= played);
      assert.equal(interruption.unheardChars, [...REPLY].length - last.span[1]);

      // Nothing of the cleared text after the answer; the new text is spoken, its spans after the old.
      const after = responses.slice(answerAt + 1);
      assert.ok(after.length > 0);
      const replyLength = [...REPLY].length;
      for (const r of after) {
        assert.equal(r.text, 'Okay, stopping.');
        assert.ok((r.textSpan?.start ?? 0) >= replyLength);
        for (const w of r.words) assert.ok(Number(w.startSample) >= sentBefore);
      }
      assert.deepEqual(
        after.flatMap((r) => r.words.map((w) => w.text)).filter((w, i, all) => all.indexOf(w) === i),
        ['Okay', 'stopping'],
      );
    });
  }

  it('answers a clear before any audio with nothing heard, and restarts a WAV stream with its header', async () => {
    const queue = createRequestQueue<Request>();
    queue.push({
      request: { case: 'config', value: { voice: 'espeak:en-us', encoding: AudioEncoding.WAV } },
    });
    queue.push({ request: { case: 'text', value: 'This sentence is never heard' } });
    queue.push({ request: { case: 'clear', value: {} } });
    queue.push({ request: { case: 'text', value: 'Hello again.' } });
    queue.end();
    const responses = await call(t, queue, () => {});
    const answer = responses[0];
    assert.ok(answer?.interruption, 'the answer comes first');
    assert.equal(Number(answer.interruption.sentSamples), 0);
    assert.deepEqual(answer.interruption.heardWords, []);
    assert.deepEqual(answer.interruption.heardSpan, { ...answer.interruption.heardSpan, start: 0, end: 0 });
    assert.equal(answer.interruption.unheardChars, [...'This sentence is never heard'].length);
    const audio = responses.slice(1);
    assert.ok(audio.length > 0);
    assert.equal(
      Buffer.from(audio[0]?.audio ?? [])
        .subarray(0, 4)
        .toString('latin1'),
      'RIFF',
    );
    assert.ok(audio.every((r) => r.text === 'Hello again.'));
  });

  it('takes back chunks queued for a client that stopped reading', async () => {
    // The client reads one chunk, then sends a clear while 8 more wait in the server's queue.
    const queue = createRequestQueue<Request>();
    queue.push({
      request: { case: 'config', value: { voice: 'espeak:en-us', encoding: AudioEncoding.LINEAR16 } },
    });
    queue.push({ request: { case: 'text', value: `${REPLY} ${REPLY}` } });
    const stream = t.client.synthesis.synthesize(queue)[Symbol.asyncIterator]();
    const first = await stream.next();
    assert.equal(first.done, false);
    queue.push({ request: { case: 'clear', value: {} } });
    queue.end();
    const rest: SynthesizeResponse[] = [];
    for (let next = await stream.next(); !next.done; next = await stream.next()) rest.push(next.value);
    const answerAt = rest.findIndex((r) => r.interruption !== undefined);
    assert.equal(answerAt, rest.length - 1, 'the answer is the last response');
    const answer = rest[answerAt] as SynthesizeResponse;
    const sent =
      (first.value as SynthesizeResponse).sampleCount + rest.reduce((sum, r) => sum + r.sampleCount, 0);
    assert.equal(Number(answer.interruption?.sentSamples), sent);
    const seconds = sent / 22_050;
    // Far less than the two replies' ~30 s: what was queued at the clear was not sent.
    assert.ok(seconds < 15, `${seconds.toFixed(1)} s sent`);
  });
});

describe('barge-in in the synthesis session', () => {
  let espeak: EspeakSynthesizer;
  let settings: SynthesisSettings;
  before(async () => {
    espeak = createEspeakSynthesizer();
    await espeak.load();
    const voice = espeak.voices().find((v) => v.id === 'espeak:en-us') as VoiceInfo;
    settings = { voice, speed: 1, output: { encoding: 'linear16' }, sampleRate: voice.sampleRate };
  });
  const deps = (synthesizer: SpeechSynthesizer): SynthesizeSessionDeps => ({
    synthesizer,
    limits: { maxTextChars: 10_000, maxStreamTextChars: 10_000 },
    parallelism: 2,
  });
  const FIRST = 'Alpha one. Beta two. Gamma three.';

  it('a drain after a clear counts the cleared text as dealt with, not as text to send again', async () => {
    const input = createRequestQueue<TextInput>();
    const finish = new AbortController();
    const stream = synthesizeStream(input, settings, deps(espeak), new AbortController().signal, {
      finish: finish.signal,
    });
    input.push({ kind: 'text', text: FIRST });
    const responses: SynthesizeResponseInit[] = [];
    const failure = (async () => {
      for await (const response of stream) {
        responses.push(response);
        if (responses.length === 1) input.push({ kind: 'clear', playedSamples: undefined });
        if (response.interruption !== undefined) finish.abort(new Error('drain'));
      }
    })();
    await assert.rejects(failure, (error: unknown) => {
      assert.ok(error instanceof VoiceError && error.reason === Reason.Draining);
      assert.equal(error.info.spoken_text_chars, String([...FIRST].length));
      return true;
    });
    assert.ok(responses.some((r) => r.interruption !== undefined));
  });

  it('a voice without timing counts the sentences whose audio began as heard', async () => {
    const untimed: SpeechSynthesizer = {
      voices: () => espeak.voices(),
      synthesize: async (text, options) => {
        const { timing: _timing, ...audio } = await espeak.synthesize(text, options);
        return audio;
      },
    };
    const input = createRequestQueue<TextInput>();
    const stream = synthesizeStream(input, settings, deps(untimed), new AbortController().signal);
    input.push({ kind: 'text', text: FIRST });
    const responses: SynthesizeResponseInit[] = [];
    for await (const response of stream) {
      responses.push(response);
      // Played: one sample into the second sentence ("Beta two.").
      const second = responses.find((r) => r.text === 'Beta two.');
      if (second !== undefined && responses.at(-1) === second) {
        input.push({ kind: 'clear', playedSamples: Number(second.sampleOffset) + 1 });
        input.end();
      }
    }
    const answer = responses.find((r) => r.interruption !== undefined)?.interruption;
    assert.ok(answer);
    assert.deepEqual(answer.heardWords, []);
    assert.deepEqual(answer.heardSpan, { start: 0, end: [...'Alpha one. Beta two.'].length });
    assert.equal(answer.heardText, 'Alpha one. Beta two.');
    assert.equal(answer.lastWordComplete, false);
  });
});
