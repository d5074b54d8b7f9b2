import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AudioEncoding, ServingStatus } from '../clients/node/index.js';
import { Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from '../server/gen/cortex/voice/v1/transcription_pb.js';
import { type GeneratedWhisperModel, generateWhisperModel } from './fixtures/whisper-model.js';
import { modelSections, testModels } from './helpers/models.js';
import { concat, silence, speak, toLinear16 } from './helpers/speech.js';
import { startTestServer, type TestServer } from './helpers/test-server.js';

const ENCODER = join('onnx', 'encoder_model.onnx');

/** Resolves once the health service reports `service` SERVING, watched through the real gRPC client. */
async function serving(t: TestServer, service: string): Promise<void> {
  const controller = new AbortController();
  try {
    for await (const response of t.client.health.watch({ service }, { signal: controller.signal })) {
      if (response.status === ServingStatus.SERVING) return;
    }
  } finally {
    controller.abort();
  }
  assert.fail(`the health watch of ${service} ended before SERVING`);
}

async function scrape(t: TestServer): Promise<string> {
  return (await fetch(t.metricsUrl)).text();
}

describe('a model pool that fails to load recovers without a restart', () => {
  let cacheDir: string;
  let model: GeneratedWhisperModel;
  let encoder: Buffer;

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'voice-recovery-'));
    model = await generateWhisperModel({ root: cacheDir, modelId: 'cortex-test/whisper-repaired' });
    encoder = await readFile(join(model.folder, ENCODER));
  });
  after(() => rm(cacheDir, { recursive: true, force: true }));

  it('a corrupt recognition model fails twice, is repaired in place, and Transcription turns SERVING', {
    timeout: 120_000,
  }, async () => {
    await writeFile(join(model.folder, ENCODER), 'this is not an onnx graph');
    const t = await startTestServer(
      {
        models: {
          cache_dir: cacheDir,
          stt: { model: model.modelId, english_model: '', dtype: 'fp32' },
          load_retry: { initial_delay_ms: 100, max_delay_ms: 400 },
        },
        performance: { workers: 1 },
      },
      (server) => server.loadEngines(),
    );
    try {
      assert.equal(t.server.health.status(Synthesis.typeName), 'SERVING', 'synthesis serves meanwhile');
      assert.equal(t.server.health.status(Transcription.typeName), 'NOT_SERVING');
      assert.throws(() => t.server.engines.recognizer.require(), /not loaded: .*whisper-repaired/);
      const second = await t.logs.waitFor(
        (r) => r.msg === 'model pool did not load every engine; retrying' && r.attempt === 2,
      );
      assert.equal(second.pool, 'inference');
      assert.match(String(second.reason), /^speech recognition: .*whisper-repaired/);
      assert.ok(
        Number(second.nextAttemptMs) >= 150 && Number(second.nextAttemptMs) <= 250,
        String(second.nextAttemptMs),
      );
      const down = await scrape(t);
      assert.match(down, /^voice_engine_load_failures_total\{pool="inference"\} [2-9]$/m);
      assert.match(down, /^voice_engine_ready\{engine="recognizer"\} 0$/m);
      assert.match(down, /^voice_engine_ready\{engine="synthesizer"\} 1$/m);
      assert.equal(
        t.server.health.status('liveness'),
        'SERVING',
        'liveness stays SERVING: the pool recovers itself',
      );

      await writeFile(join(model.folder, ENCODER), encoder);
      await serving(t, Transcription.typeName);
      await serving(t, '');
      const file = await t.client.transcription.transcribeFile({
        config: { audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: 16_000, channels: 1 } },
        audio: toLinear16(concat(silence(0.3), speak('Hello there.'), silence(1))),
      });
      assert.equal(file.results.length, 1);
      assert.equal(file.results[0]?.text, model.text);
      const up = await scrape(t);
      assert.match(up, /^voice_engine_ready\{engine="recognizer"\} 1$/m);
      assert.match(up, /^voice_workers_ready\{pool="inference"\} 1$/m);
      assert.match(up, /^voice_engine_next_load_attempt_timestamp_seconds\{pool="inference"\} 0$/m);
      assert.ok(t.logs.records().some((r) => r.msg === 'model pool loaded' && r.pool === 'inference'));
    } finally {
      await t.stop();
    }
  });

  it('a VAD pool whose workers die while loading gives up its start, keeps retrying, and Transcription turns SERVING', {
    timeout: 120_000,
  }, async () => {
    const models = await testModels();
    const base = modelSections(models);
    const counter = join(cacheDir, 'vad-loads');
    const transitions: { status: string; vadFailures: number }[] = [];
    let failures = () => 0;
    const t = await startTestServer(
      {
        ...base,
        models: { ...(base.models as object), load_retry: { initial_delay_ms: 100, max_delay_ms: 400 } },
        performance: { workers: 1 },
      },
      (server) => {
        server.health.onChange((service, status) => {
          if (service === Transcription.typeName) transitions.push({ status, vadFailures: failures() });
        });
        return server.loadEngines();
      },
      { workerTestHooks: { failLoads: { pool: 'vad', counter, times: 5 } } },
    );
    const isVadFailure = (r: Record<string, unknown>) =>
      r.msg === 'model worker failed to load; retrying' && r.pool === 'vad';
    failures = () => t.logs.records().filter(isVadFailure).length;
    try {
      const gaveUp = await t.logs.waitFor(
        (r) => r.msg === 'engine not available' && r.engine === 'voice activity detection',
      );
      assert.match(String(gaveUp.reason), /^the VAD workers failed to start: .*load 3 of 5 fails/);
      await t.logs.waitFor((r) => isVadFailure(r) && r.attempt === 5);
      await serving(t, Transcription.typeName);
      assert.equal(t.server.health.status(Synthesis.typeName), 'SERVING');
      const firstServing = transitions.find((change) => change.status === 'SERVING');
      assert.equal(
        firstServing?.vadFailures,
        5,
        `SERVING only once the VAD pool loaded: ${JSON.stringify(transitions)}`,
      );
      const file = await t.client.transcription.transcribeFile({
        config: { audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: 16_000, channels: 1 } },
        audio: toLinear16(concat(silence(0.3), speak('Hello there.'), silence(1))),
      });
      assert.equal(file.results.length, 1);
      assert.equal(file.results[0]?.text, models.whisper.text);
      const metrics = await scrape(t);
      assert.match(metrics, /^voice_engine_load_failures_total\{pool="vad"\} 5$/m);
      assert.match(metrics, /^voice_workers_ready\{pool="vad"\} 1$/m);
      assert.match(metrics, /^voice_engine_ready\{engine="vad"\} 1$/m);
    } finally {
      await t.stop();
    }
  });

  it('an inference worker that dies at work and whose replacements fail to load takes Synthesis down until one loads', {
    timeout: 120_000,
  }, async () => {
    const counter = join(cacheDir, 'inference-loads');
    // The first worker is the third load: it loads. Its replacements fail the first two.
    await writeFile(counter, '2');
    const t = await startTestServer(
      {
        models: {
          cache_dir: cacheDir,
          stt: { model: model.modelId, english_model: '', dtype: 'fp32' },
          load_retry: { initial_delay_ms: 200, max_delay_ms: 400 },
        },
        performance: { workers: 1 },
      },
      (server) => server.loadEngines(),
      { workerTestHooks: { failLoads: { pool: 'inference', counter, times: 2 } } },
    );
    const controller = new AbortController();
    try {
      await serving(t, Synthesis.typeName);
      const seen: ServingStatus[] = [];
      const watched = (async () => {
        for await (const r of t.client.health.watch(
          { service: Synthesis.typeName },
          { signal: controller.signal },
        )) {
          seen.push(r.status);
          if (r.status === ServingStatus.SERVING && seen.includes(ServingStatus.NOT_SERVING)) return;
        }
      })();
      await writeFile(counter, '0');
      const pools = t.server.workerPools;
      assert.ok(pools);
      const crash = pools.inference.run as unknown as (
        kind: string,
        payload: unknown,
        options: object,
      ) => Promise<unknown>;
      await assert.rejects(
        crash('crash', { mode: 'exit' }, { priority: 0, signal: new AbortController().signal }),
      );
      const down = await t.logs.waitFor(
        (r) => r.msg === 'engine not available' && r.engine === 'speech synthesis',
      );
      assert.match(
        String(down.reason),
        /^the inference workers keep failing while loading: .*load 1 of 2 fails/,
      );
      await watched;
      assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
      let bytes = 0;
      for await (const chunk of t.client.synthesis.synthesizeText({ text: 'Back again.' })) {
        bytes += chunk.audio.length;
      }
      assert.ok(bytes > 1000, `${bytes} bytes of speech`);
      const metrics = await scrape(t);
      assert.match(metrics, /^voice_engine_load_failures_total\{pool="inference"\} 2$/m);
      assert.match(metrics, /^voice_workers_ready\{pool="inference"\} 1$/m);
      assert.equal(pools.inference.stats().restarts, 3);
    } finally {
      controller.abort();
      await t.stop();
    }
  });
});
