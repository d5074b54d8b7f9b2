import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Code, ConnectError, createVoiceClient } from '../clients/node/index.js';
import { startTestServer, type TestServer } from './helpers/test-server.js';

const KEY = 'backend-key-0123456789';

/** The Node SDK's Access client: the backend mints a browser's token with its API key. */
describe('Node SDK: client tokens', () => {
  let t: TestServer;

  before(async () => {
    t = await startTestServer({
      security: { api_keys: [KEY], client_tokens: { secret: 'a-test-secret-of-at-least-32-bytes!!' } },
    });
  });
  after(() => t.stop());

  it('mints a token with the API key, scoped to the voice services and expiring in minutes', async () => {
    const backend = createVoiceClient({ address: t.address, apiKey: KEY });
    try {
      const before = Date.now();
      const minted = await backend.access.createClientToken({ ttlSeconds: 120 });
      assert.match(minted.token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
      const expires = Number(minted.expireTime?.seconds ?? 0n) * 1000;
      assert.ok(expires > before + 110_000 && expires < before + 130_000, `expires at ${expires}`);
      assert.deepEqual([...minted.scopes].sort(), [
        'cortex.voice.v1.Synthesis',
        'cortex.voice.v1.Transcription',
      ]);
    } finally {
      backend.close();
    }
  });

  it('refuses to mint without an API key', async () => {
    const anonymous = createVoiceClient({ address: t.address });
    try {
      await assert.rejects(anonymous.access.createClientToken({}), (error: unknown) => {
        return ConnectError.from(error).code === Code.Unauthenticated;
      });
    } finally {
      anonymous.close();
    }
  });
});
