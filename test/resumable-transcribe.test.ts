import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AudioEncoding,
  Code,
  createVoiceClient,
  type TranscribeResponse,
  type VoiceClient,
} from '../clients/node/index.js';
import { expectError } from './helpers/errors.js';
import {
  type ConfigInit,
  collect,
  commitsOf,
  lines,
  type RequestInit,
  speechWithPauses,
} from './helpers/resume.js';
import { RATE, toLinear16 } from './helpers/speech.js';
import { startProxy } from './helpers/tcp-proxy.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

const config = {
  audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 },
  language: 'en',
};
/** 100 ms chunks. */
const CHUNK_BYTES = 3200;

/** The config, then the audio in 100 ms chunks sent 5x faster than real time. */
async function* paced(audio: Uint8Array, settings: ConfigInit = config): AsyncGenerator<RequestInit> {
  yield { request: { case: 'config', value: settings } };
  for (let offset = 0; offset < audio.length; offset += CHUNK_BYTES) {
    yield { request: { case: 'audio', value: audio.subarray(offset, offset + CHUNK_BYTES) } };
    await sleep(20);
  }
}

/** A client that counts the Transcribe streams it opens. */
function countingClient(address: string): { client: VoiceClient; streams: () => number } {
  let streams = 0;
  const client = createVoiceClient({
    address,
    interceptors: [
      (next) => (request) => {
        if (request.method.name === 'Transcribe') streams += 1;
        return next(request);
      },
    ],
  });
  return { client, streams: () => streams };
}

describe('Node SDK transcribe with resume', () => {
  let t: TestServer;
  let audio: Uint8Array;
  let reference: TranscribeResponse[];

  before(async () => {
    t = await startServerWithEngines({ performance: { workers: 2 } });
    audio = toLinear16(speechWithPauses());
    reference = await collect(t.client.transcription.transcribe(paced(audio)));
    assert.equal(lines(reference).filter((line) => line.startsWith('final')).length, 4);
  });
  after(() => t.stop());

  /**
   * Streams `audio` through the SDK with resume; at the first response `when` accepts, the server
   * stops (`stop(graceMs)`) and a new one takes its port. Resolves once the stream has ended and
   * the new server is up, with every response and the number of Transcribe streams opened.
   */
  async function throughRestart(when: (response: TranscribeResponse) => boolean, graceMs: number) {
    const port = Number(t.address.split(':')[1]);
    const { client, streams } = countingClient(t.address);
    let restarted: Promise<TestServer> | undefined;
    const seen: TranscribeResponse[] = [];
    try {
      for await (const response of client.transcribe(paced(audio), { resume: { attempts: 40 } })) {
        seen.push(response);
        if (restarted === undefined && when(response)) {
          restarted = t
            .stop(graceMs)
            .then(() => startServerWithEngines({ performance: { workers: 2 }, service: { port } }));
          restarted.then((next) => {
            t = next;
          });
        }
      }
    } finally {
      client.close();
    }
    assert.ok(restarted !== undefined, 'the server was restarted');
    await restarted;
    return { seen, streams: streams() };
  }

  it('gives the events of an uninterrupted run through a server restart on the same port', async () => {
    // Mid-stream, after the first final: the server goes away, and a new one takes the port.
    const { seen, streams } = await throughRestart(
      (response) => response.event.case === 'result' && response.event.value.isFinal,
      0,
    );
    assert.ok(streams >= 2, `streams opened: ${streams}`);
    assert.deepEqual(lines(seen), lines(reference));
    const commits = commitsOf(seen).map((commit) => commit.offsetMs);
    assert.deepEqual(
      commits,
      [...commits].sort((a, b) => a - b),
      'commit points only advance',
    );
  });

  it('resumes after a drain (UNAVAILABLE, DRAINING) on the next server, each utterance final once', async () => {
    const { seen, streams } = await throughRestart(
      (response) => response.event.case === 'speechStarted',
      1000,
    );
    assert.ok(streams >= 2, `streams opened: ${streams}`);
    // The SDK's stream is resumable: the drain leaves the utterance in progress to the next server,
    // and no utterance is lost or doubled.
    const finals = seen.flatMap((response) =>
      response.event.case === 'result' && response.event.value.isFinal
        ? [response.event.value.utteranceIndex]
        : [],
    );
    assert.ok(finals.length >= 4, lines(seen).join('\n'));
    assert.deepEqual(
      finals,
      finals.map((_, index) => index),
      lines(seen).join('\n'),
    );
    const started = seen.flatMap((response) =>
      response.event.case === 'speechStarted' ? [response.event.value.utteranceIndex] : [],
    );
    assert.deepEqual(started, finals);
  });

  it('gives the events of an uninterrupted run when the connection is reset mid-utterance', async () => {
    const proxy = await startProxy(() => Number(t.address.split(':')[1]));
    const { client, streams } = countingClient(`127.0.0.1:${proxy.port}`);
    let cuts = 0;
    const seen: TranscribeResponse[] = [];
    try {
      for await (const response of client.transcribe(paced(audio), { resume: true })) {
        seen.push(response);
        // Utterance 1 has started and is still being spoken.
        if (
          cuts === 0 &&
          response.event.case === 'speechStarted' &&
          response.event.value.utteranceIndex === 1
        ) {
          cuts += 1;
          proxy.cut();
        }
      }
    } finally {
      client.close();
      proxy.close();
    }
    assert.equal(cuts, 1);
    assert.equal(streams(), 2);
    assert.deepEqual(lines(seen), lines(reference));
  });

  it('repeats no interim across a reset: the interims of each utterance grow and stop at its end', async () => {
    const proxy = await startProxy(() => Number(t.address.split(':')[1]));
    const { client, streams } = countingClient(`127.0.0.1:${proxy.port}`);
    const settings = { ...config, interimResults: true, interimIntervalMs: 250 };
    const seen: TranscribeResponse[] = [];
    let cut = false;
    try {
      for await (const response of client.transcribe(paced(audio, settings), { resume: true })) {
        seen.push(response);
        const event = response.event;
        // An interim of utterance 1 has been seen: the cut comes while it is still being spoken.
        if (!cut && event.case === 'result' && !event.value.isFinal && event.value.utteranceIndex === 1) {
          cut = true;
          proxy.cut();
        }
      }
    } finally {
      client.close();
      proxy.close();
    }
    assert.ok(cut, 'an interim of utterance 1 came');
    assert.equal(streams(), 2);
    assert.deepEqual(lines(seen), lines(reference));
    const closed = new Set<number>();
    const lastEnd = new Map<number, number>();
    for (const response of seen) {
      const event = response.event;
      if (event.case === 'speechEnded') closed.add(event.value.utteranceIndex);
      if (event.case !== 'result' || event.value.isFinal) continue;
      const index = event.value.utteranceIndex;
      assert.ok(!closed.has(index), `no interim of utterance ${index} after its end`);
      assert.ok(event.value.endMs > (lastEnd.get(index) ?? -1), `interims of ${index} only grow`);
      lastEnd.set(index, event.value.endMs);
    }
  });

  it('fails with RESOURCE_EXHAUSTED when more audio is held than allowed', async () => {
    const client = createVoiceClient({ address: t.address });
    try {
      const error = await expectError(
        collect(client.transcribe(paced(audio), { resume: { maxHeldAudioMs: 300 } })),
      );
      assert.equal(error.code, Code.ResourceExhausted);
      assert.match(error.rawMessage, /maxHeldAudioMs \(300\)/);
    } finally {
      client.close();
    }
  });

  it('does not resume a stream the caller cancelled', async () => {
    const client: VoiceClient = createVoiceClient({ address: t.address });
    const controller = new AbortController();
    try {
      const error = await expectError(async () => {
        for await (const response of client.transcribe(paced(audio), {
          resume: true,
          signal: controller.signal,
        })) {
          if (response.event.case === 'speechStarted') controller.abort();
        }
      });
      assert.equal(error.code, Code.Canceled);
    } finally {
      client.close();
    }
  });
});
