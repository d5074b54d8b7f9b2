import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AudioEncoding, createVoiceClient, type TranscribeResponse } from '../clients/node/index.js';
import { openResumableSession } from '../clients/web/resumable-session.js';
import { liveSessionApi } from '../clients/web/session-rpc.js';
import { collect, commitsOf, lines, requestsOf, speechWithPauses } from './helpers/resume.js';
import { RATE, toLinear16 } from './helpers/speech.js';
import { startProxy } from './helpers/tcp-proxy.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

const config = {
  audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 },
  language: 'en',
};
const CHUNK_BYTES = 3200;

describe('browser SDK live session with resume (session RPCs from Node)', () => {
  let t: TestServer;
  let audio: Uint8Array;
  let reference: TranscribeResponse[];

  before(async () => {
    t = await startServerWithEngines({ performance: { workers: 2 } });
    audio = toLinear16(speechWithPauses());
    reference = await collect(t.client.transcription.transcribe(requestsOf(config, audio, CHUNK_BYTES)));
  });
  after(() => t.stop());

  it('reopens a lost session from the last commit point and gives the events of an uninterrupted run', async () => {
    const proxy = await startProxy(() => Number(t.address.split(':')[1]));
    const client = createVoiceClient({ address: `127.0.0.1:${proxy.port}` });
    const opened: string[] = [];
    const api = liveSessionApi(client.transcription);
    const counting = {
      ...api,
      open: (...args: Parameters<typeof api.open>) => {
        opened.push('open');
        return api.open(...args);
      },
    };
    const controller = new AbortController();
    const session = openResumableSession(counting, {
      config,
      format: { frameBytes: 2, sampleRate: RATE },
      signal: controller.signal,
      resume: { attempts: 20 },
      maxChunkBytes: 64 * 1024,
    });
    let cut = false;
    const seen: TranscribeResponse[] = [];
    const reading = (async () => {
      for await (const event of session.events) {
        seen.push(event);
        // Mid-utterance 1: every connection drops; the session's stream and appends fail.
        if (!cut && event.event.case === 'speechStarted' && event.event.value.utteranceIndex === 1) {
          cut = true;
          proxy.cut();
        }
      }
    })();
    try {
      for (let offset = 0; offset < audio.length; offset += CHUNK_BYTES) {
        session.push(audio.subarray(offset, offset + CHUNK_BYTES));
        await sleep(20);
      }
      await session.end();
      await reading;
    } finally {
      client.close();
      proxy.close();
    }
    assert.ok(cut);
    assert.ok(opened.length >= 2, `sessions opened: ${opened.length}`);
    assert.deepEqual(lines(seen), lines(reference));
    const commits = commitsOf(seen).map((commit) => commit.offsetMs);
    assert.deepEqual(
      commits,
      [...commits].sort((a, b) => a - b),
    );
  });
});
