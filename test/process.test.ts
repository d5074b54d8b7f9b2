import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AudioEncoding,
  Code,
  ConnectError,
  createVoiceClient,
  errorInfoOf,
  ServingStatus,
  type TranscribeResponse,
} from '../clients/node/index.js';
import { modelSections, testModels } from './helpers/models.js';
import { repoRoot } from './helpers/paths.js';
import { concat, RATE, silence, speak, toLinear16 } from './helpers/speech.js';
import { writeConfigFile } from './helpers/test-server.js';

describe('the server process', () => {
  it('drains on SIGTERM: NOT_SERVING, new calls refused, streams in flight flushed and ended DRAINING after the grace, exit 0', async () => {
    const config = writeConfigFile({
      ...modelSections(await testModels()),
      service: { host: '127.0.0.1', port: 0, drain_grace_seconds: 2, drain_flush_seconds: 5 },
      monitoring: { host: '127.0.0.1', prometheus_port: 0 },
    });
    const child = spawn(process.execPath, [join(repoRoot(), 'dist/server/main.js'), '--config', config], {
      env: { ...process.env, VOICE_CONFIG: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const records: Array<Record<string, unknown>> = [];
    const lines = createInterface({ input: child.stdout });
    const waitForLog = (msg: string) =>
      new Promise<Record<string, unknown>>((resolve) => {
        const found = records.find((record) => record.msg === msg);
        if (found) return resolve(found);
        const onLine = (line: string) => {
          const record = JSON.parse(line) as Record<string, unknown>;
          if (record.msg === msg) {
            lines.off('line', onLine);
            resolve(record);
          }
        };
        lines.on('line', onLine);
      });
    lines.on('line', (line) => records.push(JSON.parse(line) as Record<string, unknown>));
    const exited = once(child, 'exit');
    try {
      const listening = await waitForLog('listening');
      await waitForLog('engines loaded');
      const client = createVoiceClient({ address: `127.0.0.1:${listening.grpcPort}` });
      const synthesis = await client.health.check({ service: 'cortex.voice.v1.Synthesis' });
      assert.equal(synthesis.status, ServingStatus.SERVING);

      const keepOpen = new AbortController();
      async function* requests() {
        yield { request: { case: 'config' as const, value: { encoding: AudioEncoding.LINEAR16 } } };
        yield { request: { case: 'text' as const, value: 'Hello there, this stream stays open.' } };
        yield { request: { case: 'flush' as const, value: { $typeName: 'cortex.voice.v1.Flush' as const } } };
        await sleep(60_000, undefined, { signal: keepOpen.signal }).catch(() => {});
      }
      let received = 0;
      let firstAudio!: () => void;
      const audioArrived = new Promise<void>((resolve) => {
        firstAudio = resolve;
      });
      const inFlight = (async () => {
        for await (const _ of client.synthesis.synthesize(requests())) {
          received += 1;
          firstAudio();
        }
      })();
      inFlight.catch(() => {});
      await audioArrived;

      // A Transcribe stream in the middle of an utterance (speech, then too short a pause to end it).
      const audio = toLinear16(
        concat(silence(0.3), speak('Please send me the report by Friday.'), silence(0.1)),
      );
      async function* transcribeRequests() {
        yield {
          request: {
            case: 'config' as const,
            value: {
              audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 },
              language: 'en',
            },
          },
        };
        for (let at = 0; at < audio.length; at += 3200)
          yield { request: { case: 'audio' as const, value: audio.subarray(at, at + 3200) } };
        await sleep(60_000, undefined, { signal: keepOpen.signal }).catch(() => {});
      }
      const transcribed: TranscribeResponse[] = [];
      let speechStarted!: () => void;
      const started = new Promise<void>((resolve) => {
        speechStarted = resolve;
      });
      const transcribing = (async () => {
        for await (const response of client.transcription.transcribe(transcribeRequests())) {
          transcribed.push(response);
          if (response.event.case === 'speechStarted') speechStarted();
        }
      })();
      transcribing.catch(() => {});
      await started;

      child.kill('SIGTERM');
      await waitForLog('draining');
      const health = await client.health.check({ service: '' });
      assert.equal(health.status, ServingStatus.NOT_SERVING, 'health answers NOT_SERVING while draining');
      const refused = await client.synthesis
        .listVoices({})
        .catch((error: unknown) => ConnectError.from(error));
      assert.ok(refused instanceof ConnectError);
      assert.equal(refused.code, Code.Unavailable);

      const startedAt = Date.now();
      const cancelled = await inFlight.then(
        () => undefined,
        (error: unknown) => ConnectError.from(error),
      );
      keepOpen.abort();
      assert.ok(cancelled instanceof ConnectError, 'the open stream is ended by the drain');
      assert.equal(cancelled.code, Code.Unavailable);
      assert.match(cancelled.rawMessage, /shutting down/);
      assert.ok(received > 0, 'audio sent before the drain was delivered');
      assert.ok(Date.now() - startedAt < 5000);
      const drained = await transcribing.then(
        () => undefined,
        (error: unknown) => ConnectError.from(error),
      );
      assert.ok(drained instanceof ConnectError, 'the Transcribe stream ends with the drain');
      assert.equal(drained.code, Code.Unavailable);
      assert.equal(errorInfoOf(drained)?.reason, 'DRAINING');
      assert.match(errorInfoOf(drained)?.metadata.processed_audio_ms ?? '', /^\d+$/);
      assert.match(drained.rawMessage, /audio through \d+\.\d{3} s was transcribed, resend the rest/);
      const finals = transcribed.filter((r) => r.event.case === 'result' && r.event.value.isFinal);
      assert.equal(
        finals.length,
        1,
        'the utterance in progress at the grace end was recognised and delivered',
      );
      await waitForLog('drain grace period over; calls in flight take no more input and finish');
      const [code] = await exited;
      assert.equal(code, 0);
      assert.ok(records.some((record) => record.msg === 'stopped'));
      client.close();
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
