import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { AudioEncoding } from '../clients/node/index.js';
import { Transcription } from '../server/gen/cortex/voice/v1/transcription_pb.js';
import { analysedMs, finalsOf, observe, processedMsOf, reasonOf } from './helpers/drain.js';
import { expectError } from './helpers/errors.js';
import { concat, RATE, silence, speak, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines } from './helpers/test-server.js';

describe('drain: a browser session over Connect on the web port', () => {
  it('flushes the audio appended so far, delivers its final, then ends UNAVAILABLE DRAINING', async () => {
    const t = await startServerWithEngines({ security: { rate_limit: { enabled: false } } });
    try {
      // As a page calls it: Connect over HTTP/1.1 (fetch cannot stream a request body).
      const client = createClient(
        Transcription,
        createConnectTransport({ baseUrl: `http://127.0.0.1:${t.webPort}`, httpVersion: '1.1' }),
      );
      const config = {
        audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 },
        language: 'en',
      };
      const iterator = client.startTranscriptionSession({ config })[Symbol.asyncIterator]();
      const sessionId = (await iterator.next()).value?.sessionStarted?.sessionId ?? '';
      assert.notEqual(sessionId, '');
      const events = observe({ [Symbol.asyncIterator]: () => iterator });
      // Speech, then too short a pause to end the utterance: its final is pending.
      const audio = concat(silence(0.3), speak('Thank you, and see you soon.'), silence(0.1));
      const bytes = toLinear16(audio);
      for (let at = 0, sequenceNumber = 1; at < bytes.length; at += 3200, sequenceNumber += 1) {
        await client.appendSessionAudio({ sessionId, sequenceNumber, audio: bytes.subarray(at, at + 3200) });
      }
      const stopping = t.stop(0, 5000);
      const error = await expectError(events.done);
      assert.equal(error.code, Code.Unavailable, error.rawMessage);
      assert.equal(reasonOf(error), 'DRAINING');
      assert.equal(processedMsOf(error), analysedMs(audio.length));
      assert.equal(finalsOf(events.seen).length, 1, 'the pending utterance was recognised and delivered');
      await stopping;
    } finally {
      await t.stop();
    }
  });
});
