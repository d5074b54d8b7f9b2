import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AudioEncoding, Code, ConnectError } from '../clients/node/index.js';
import { testModels } from './helpers/models.js';
import { concat, RATE, silence, speak, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

type RequestInit = {
  request:
    | {
        case: 'config';
        value: {
          audioFormat: { encoding: AudioEncoding; sampleRateHz?: number; channels?: number };
          language?: string;
          model?: string;
        };
      }
    | { case: 'audio'; value: Uint8Array };
};

/**
 * A stream the server fails while its request side is still being read must get its error status at
 * once, not wait for its deadline: whether the client keeps sending or has half-closed.
 */
describe('errors while the request side is being read', () => {
  let t: TestServer;

  before(async () => {
    t = await startServerWithEngines({ performance: { workers: 1 } });
  });
  after(() => t.stop());

  /** Sends `first`, then half-closes or waits (never half-closing) until the call has ended. */
  async function failWhileOpen(first: RequestInit[], halfClose = false): Promise<ConnectError> {
    const ended = new AbortController();
    const requests = (async function* (): AsyncGenerator<RequestInit> {
      yield* first;
      if (halfClose) return;
      await new Promise((resolve) => ended.signal.addEventListener('abort', resolve, { once: true }));
    })();
    try {
      for await (const _ of t.client.transcription.transcribe(requests, { timeoutMs: 20_000 })) {
        // events before the error are fine
      }
      assert.fail('the call succeeded');
    } catch (error) {
      return ConnectError.from(error);
    } finally {
      ended.abort();
    }
  }

  it('gets INVALID_ARGUMENT for audio that is not the declared WAV', async () => {
    const error = await failWhileOpen([
      { request: { case: 'config', value: { audioFormat: { encoding: AudioEncoding.WAV } } } },
      { request: { case: 'audio', value: new TextEncoder().encode('this is not a RIFF header at all, no') } },
    ]);
    assert.equal(error.code, Code.InvalidArgument);
  });

  for (const halfClose of [false, true]) {
    it(`gets the failed final (an English-only model asked for German), ${halfClose ? 'half-closed' : 'still open'}`, async () => {
      const models = await testModels();
      const clip = toLinear16(concat(silence(0.3), speak('Guten Morgen.'), silence(0.8)));
      const error = await failWhileOpen(
        [
          {
            request: {
              case: 'config',
              value: {
                audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 },
                language: 'de',
                model: models.moonshine.modelId,
              },
            },
          },
          { request: { case: 'audio', value: clip } },
        ],
        halfClose,
      );
      assert.equal(error.code, Code.InvalidArgument);
      assert.match(error.rawMessage, /English-only/);
    });
  }
});
