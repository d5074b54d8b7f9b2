import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AudioEncoding, Code, ConnectError } from '../clients/node/index.js';
import { startServerWithEngines } from './helpers/test-server.js';

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
