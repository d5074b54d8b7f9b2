import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AudioEncoding, Code, ConnectError, ServingStatus } from '../clients/node/index.js';
import { concat, RATE, silence, speak, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines } from './helpers/test-server.js';

const LINEAR16_16K = { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 };

describe('performance.max_concurrent_requests', () => {
  it('refuses engine-backed calls beyond the cap with RESOURCE_EXHAUSTED, and admits again when one ends', async () => {
    const t = await startServerWithEngines({ performance: { max_concurrent_requests: 1, workers: 1 } });
    const hold = new AbortController();
    try {
      async function* openStream() {
        yield { request: { case: 'config' as const, value: { encoding: AudioEncoding.LINEAR16 } } };
        yield { request: { case: 'text' as const, value: 'Hello there.' } };
        await sleep(60_000, undefined, { signal: hold.signal }).catch(() => {});
      }
      const held = (async () => {
        for await (const _ of t.client.synthesis.synthesize(openStream(), { signal: hold.signal })) {
          // keeps the call open
        }
      })().catch(() => {});
      await sleep(300);
      const refused = await (async () => {
        for await (const _ of t.client.synthesis.synthesizeText({ text: 'Second call.' })) {
          // not reached
        }
      })().catch((error: unknown) => ConnectError.from(error));
      assert.ok(refused instanceof ConnectError);
      assert.equal(refused.code, Code.ResourceExhausted);
      assert.match(
        refused.rawMessage,
        /maximum of 1 transcriptions and syntheses \(performance\.max_concurrent_requests\)/,
      );
      assert.equal(refused.metadata.get('grpc-retry-pushback-ms'), '1000');
      const voices = await t.client.synthesis.listVoices({});
      assert.ok(voices.voices.length > 0, 'calls that run no engine job are not capped');

      hold.abort();
      await held;
      await sleep(100);
      let chunks = 0;
      for await (const _ of t.client.synthesis.synthesizeText({ text: 'Third call.' })) chunks += 1;
      assert.ok(chunks > 0);
    } finally {
      hold.abort();
      await t.stop();
    }
  });
});

describe('a full inference queue', () => {
  it('fails only the streams whose work was refused, with RESOURCE_EXHAUSTED, and keeps serving', async () => {
    const t = await startServerWithEngines({ performance: { request_queue_size: 1, workers: 1 } });
    try {
      const sentence = speak('Please send me the report by Friday.');
      const audio = toLinear16(
        concat(silence(0.3), sentence, silence(0.7), sentence, silence(0.7), sentence, silence(0.7)),
      );
      const transcribe = async () => {
        async function* requests() {
          yield { request: { case: 'config' as const, value: { audioFormat: LINEAR16_16K } } };
          for (let offset = 0; offset < audio.length; offset += 32_000) {
            yield { request: { case: 'audio' as const, value: audio.subarray(offset, offset + 32_000) } };
          }
        }
        let finals = 0;
        for await (const response of t.client.transcription.transcribe(requests())) {
          if (response.event.case === 'result' && response.event.value.isFinal) finals += 1;
        }
        return finals;
      };
      const speakLong = async () => {
        let chunks = 0;
        for await (const _ of t.client.synthesis.synthesizeText({ text: 'One two three. '.repeat(40) }))
          chunks += 1;
        return chunks;
      };
      const outcomes = await Promise.allSettled([
        ...Array.from({ length: 6 }, transcribe),
        ...Array.from({ length: 6 }, speakLong),
      ]);
      const refused = outcomes.flatMap((outcome) =>
        outcome.status === 'rejected' ? [ConnectError.from(outcome.reason)] : [],
      );
      assert.ok(refused.length > 0, 'a queue of 1 must refuse some work');
      for (const error of refused) {
        assert.equal(error.code, Code.ResourceExhausted, error.rawMessage);
        assert.match(error.rawMessage, /worker queue is full \(performance\.request_queue_size = 1\)/);
      }
      const health = await t.client.health.check({ service: '' });
      assert.equal(health.status, ServingStatus.SERVING, 'the server survived');
      const versions = await t.client.synthesis.listVoices({});
      assert.ok(versions.voices.length > 0, 'calls keep being served');
    } finally {
      await t.stop();
    }
  });
});
