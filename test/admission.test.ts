import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AudioEncoding,
  Code,
  ConnectError,
  errorInfoOf,
  errorReasonOf,
  ServingStatus,
} from '../clients/node/index.js';
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
      assert.deepEqual(errorInfoOf(refused)?.metadata, { limit: 'performance.max_concurrent_requests' });
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
        assert.deepEqual(errorInfoOf(error)?.metadata, { limit: 'performance.request_queue_size' });
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

/** A promise and its resolver. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

describe('performance.max_final_delay_ms', () => {
  it('refuses the live stream past the capacity estimate at its config, with RESOURCE_EXHAUSTED naming the key and a retry hint, while the admitted streams keep working', async () => {
    const t = await startServerWithEngines({
      performance: { workers: 1, max_final_delay_ms: 1000 },
      security: { rate_limit: { enabled: false } },
    });
    try {
      const modelId = t.config.models.stt.model;
      const calibrated = await t.client.transcription.getCapacity({});
      assert.equal(calibrated.maxFinalDelayMs, 1000);
      assert.equal(calibrated.workers, 1);
      assert.equal(calibrated.admittedStreams, 0);
      const measured = calibrated.models.find((entry) => entry.model === modelId);
      assert.ok(measured, 'the calibration at start-up gave the model a cost');
      assert.ok(measured.fixedSeconds + measured.secondsPerAudioSecond > 0);
      assert.equal(measured.observedRecognitions, 0);
      // The generated model's measured cost depends on this machine's load; a known cost makes the
      // room exact: 300 ms a final on one worker, 2 s utterances at a speech ratio of 1 → A = 0.15 n;
      // the p95 delay 0.15 / (1 − A) · ln(20 A) + 0.3 ≤ 1 s ⇔ n ≤ 3.
      t.server.capacity.calibrate(modelId, { fixedSeconds: 0.3, perAudioSecond: 0 });
      const capacity = await t.client.transcription.getCapacity({});
      const model = capacity.models.find((entry) => entry.model === modelId);
      assert.equal(model?.capacityStreams, 3);
      const room = model.availableStreams;
      assert.equal(room, 3);

      const sentence = speak('Please send me the report by Friday.');
      const audio = toLinear16(concat(silence(0.3), sentence, silence(1)));
      const release = deferred();
      const refusal = deferred<ConnectError>();
      async function* requests() {
        yield { request: { case: 'config' as const, value: { audioFormat: LINEAR16_16K } } };
        await release.promise;
        for (let offset = 0; offset < audio.length; offset += 16_000) {
          yield { request: { case: 'audio' as const, value: audio.subarray(offset, offset + 16_000) } };
        }
      }
      const transcribe = async (): Promise<number | ConnectError> => {
        let finals = 0;
        try {
          for await (const response of t.client.transcription.transcribe(requests())) {
            if (response.event.case === 'result' && response.event.value.isFinal) finals += 1;
          }
          return finals;
        } catch (error) {
          const refused = ConnectError.from(error);
          refusal.resolve(refused);
          return refused;
        }
      };
      // One stream more than there is room for, all at once: exactly one is refused, at its config.
      const streams = Array.from({ length: room + 1 }, transcribe);
      const refused = await refusal.promise;
      assert.equal(refused.code, Code.ResourceExhausted, refused.rawMessage);
      assert.equal(errorReasonOf(refused), 'OVER_CAPACITY');
      assert.equal(errorInfoOf(refused)?.metadata.limit, 'performance.max_final_delay_ms');
      assert.match(refused.rawMessage, /expected delay of ".+" finals would be \d+ ms/);
      assert.match(refused.rawMessage, /past performance\.max_final_delay_ms = 1000 ms/);
      assert.ok(Number(refused.metadata.get('grpc-retry-pushback-ms')) >= 1000, 'a retry hint');

      const full = await t.client.transcription.getCapacity({});
      assert.equal(full.admittedStreams, room, 'every other stream was admitted before the refusal');
      assert.equal(full.refusedStreams, 1n);
      assert.equal(full.models.find((entry) => entry.model === modelId)?.availableStreams, 0);
      assert.ok(full.loadRatio > 0);

      const scraped = await (await fetch(t.metricsUrl)).text();
      const label = `{model="${modelId}"}`;
      assert.match(scraped, new RegExp(`^voice_stt_admission_refusals_total${regexEscape(label)} 1$`, 'm'));
      for (const name of [
        'voice_stt_capacity_streams',
        'voice_stt_available_streams',
        'voice_stt_expected_final_delay_seconds',
        'voice_stt_cost_fixed_seconds',
        'voice_stt_cost_per_audio_second',
      ]) {
        assert.match(scraped, new RegExp(`^${name}${regexEscape(label)} [0-9.e+-]+$`, 'm'), name);
      }
      assert.match(scraped, /^voice_stt_load_ratio [0-9.e+-]+$/m);
      assert.match(scraped, new RegExp(`^voice_stt_admitted_streams ${room}$`, 'm'));

      const file = await t.client.transcription.transcribeFile({
        config: { audioFormat: LINEAR16_16K },
        audio,
      });
      assert.equal(file.results.length, 1, 'TranscribeFile is not a live stream: left to the other caps');

      release.resolve();
      const outcomes = await Promise.all(streams);
      assert.equal(outcomes.filter((outcome) => outcome instanceof ConnectError).length, 1);
      for (const outcome of outcomes) {
        if (typeof outcome === 'number') assert.equal(outcome, 1, 'an admitted stream got its final');
      }

      const after = await t.client.transcription.getCapacity({});
      assert.equal(after.admittedStreams, 0, 'streams that ended leave');
      const learned = after.models.find((entry) => entry.model === modelId);
      assert.ok((learned?.observedRecognitions ?? 0) >= room, 'the finals taught the cost model');
      assert.ok(after.speechRatio < 1, 'and the speech ratio');
      release.resolve();
      assert.equal(await transcribe(), 1, 'a new stream is admitted once there is room');
    } finally {
      await t.stop();
    }
  });
});

function regexEscape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
