import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createVoiceServer } from '../server/app.js';
import { ConfigError } from '../server/config.js';
import type { EngineSlot } from '../server/engines/engine-slot.js';
import { Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from '../server/gen/cortex/voice/v1/transcription_pb.js';
import { createLogger } from '../server/observability/logger.js';
import { type GeneratedWhisperModel, generateWhisperModel } from './fixtures/whisper-model.js';
import { type HubMirror, startHubMirror } from './helpers/hub-mirror.js';
import { repoRoot } from './helpers/paths.js';
import {
  CLOSED_LOOPBACK_HUB,
  startTestServer,
  type TestServer,
  testConfig,
  writeConfigFile,
} from './helpers/test-server.js';

/** Resolves once the slot holds an engine (or at once when it already does). */
function loaded<T>(slot: EngineSlot<T>): Promise<T> {
  return new Promise((resolve) => {
    const check = () => {
      const engine = slot.current();
      if (engine !== undefined) resolve(engine);
    };
    slot.onChange(check);
    check();
  });
}

/** A test server on one worker whose models folder is empty, with only the multilingual model configured. */
async function serverWithEmptyCache(options: {
  readonly allowDownloads: boolean;
  readonly hubUrl: string;
  readonly model: string;
}): Promise<{ t: TestServer; cacheDir: string }> {
  const cacheDir = mkdtempSync(join(tmpdir(), 'voice-cache-'));
  const t = await startTestServer({
    models: {
      cache_dir: cacheDir,
      allow_downloads: options.allowDownloads,
      hub_url: options.hubUrl,
      stt: { model: options.model, english_model: '', dtype: 'fp32' },
    },
    performance: { workers: 1 },
  });
  return { t, cacheDir };
}

/**
 * A loopback stand-in for the model hub in its URL layout. Its answers wait until `release()` is
 * called, so a test can look at the server while the download is under way.
 */
describe('start-up downloads of missing models', () => {
  let hub: HubMirror;
  let hubUrl: string;
  let source: GeneratedWhisperModel;
  let release: () => void = () => {};

  before(async () => {
    const mirror = mkdtempSync(join(tmpdir(), 'voice-hub-'));
    source = await generateWhisperModel({ root: mirror, modelId: 'cortex-test/whisper-to-download' });
    hub = await startHubMirror(mirror);
    hubUrl = hub.url;
  });
  after(() => hub.close());

  it('serves synthesis while it downloads, then turns transcription SERVING', async () => {
    hub.holdAnswersUntil(
      new Promise((resolve) => {
        release = resolve;
      }),
    );
    const { t, cacheDir } = await serverWithEmptyCache({
      allowDownloads: true,
      hubUrl,
      model: source.modelId,
    });
    try {
      await t.server.loadEngines();
      await loaded(t.server.engines.synthesizer);
      assert.equal(t.server.health.status(Synthesis.typeName), 'SERVING');
      assert.equal(t.server.health.status(Transcription.typeName), 'NOT_SERVING');
      assert.throws(
        () => t.server.engines.recognizer.require(),
        new RegExp(`downloading ${source.modelId} from ${hubUrl}`),
      );
      release();
      await t.server.modelsInstalled;
      await loaded(t.server.engines.recognizer);
      assert.equal(t.server.health.status(Transcription.typeName), 'SERVING');
      for (const file of source.files) {
        assert.deepEqual(
          readFileSync(join(cacheDir, source.modelId, file)),
          readFileSync(join(source.folder, file)),
        );
      }
      const messages = t.logs.records().map((record) => record.msg);
      assert.ok(messages.includes('downloading a missing model'));
      assert.ok(messages.includes('model download progress'));
      assert.ok(messages.includes('model downloaded'));
      assert.ok(messages.includes('reloading model workers'));
      assert.ok(hub.requested.some((url) => url.endsWith('/onnx/encoder_model.onnx')));
    } finally {
      release();
      await t.stop();
    }
  });

  it('offline: fails at once with one line naming what is missing, and synthesis serves', async () => {
    const { t, cacheDir } = await serverWithEmptyCache({
      allowDownloads: true,
      hubUrl: CLOSED_LOOPBACK_HUB,
      model: 'onnx-community/whisper-base',
    });
    try {
      const started = performance.now();
      await t.server.loadEngines();
      await assert.rejects(t.server.modelsInstalled, /could not be downloaded from http:\/\/127\.0\.0\.1:2/);
      assert.ok(performance.now() - started < 30_000);
      assert.equal(t.server.health.status(Synthesis.typeName), 'SERVING');
      assert.equal(t.server.health.status(Transcription.typeName), 'NOT_SERVING');
      const failures = t.logs
        .records()
        .filter((record) => String(record.msg).startsWith('model download failed'));
      assert.equal(failures.length, 1);
      assert.match(
        String(failures[0]?.msg),
        /^model download failed: onnx-community\/whisper-base could not be downloaded from http:\/\/127\.0\.0\.1:2: fetch failed: .*ECONNREFUSED/,
      );
      assert.throws(
        () => t.server.engines.recognizer.require(),
        new RegExp(`onnx-community/whisper-base is missing from ${cacheDir}/onnx-community/whisper-base`),
      );
    } finally {
      await t.stop();
    }
  });

  it('with downloads off, fetches nothing and names the missing files', async () => {
    const before = hub.requested.length;
    const { t } = await serverWithEmptyCache({ allowDownloads: false, hubUrl, model: source.modelId });
    try {
      await t.server.loadEngines();
      await t.server.modelsInstalled;
      assert.equal(hub.requested.length, before);
      assert.throws(
        () => t.server.engines.recognizer.require(),
        /is not installed: it must be in .*missing config\.json/,
      );
      assert.equal(t.server.health.status(Synthesis.typeName), 'SERVING');
    } finally {
      await t.stop();
    }
  });
});

describe('models.stt.device', () => {
  it('refuses a device onnxruntime cannot use here, in one line', (t) => {
    const config = testConfig({ models: { stt: { device: 'cuda' } } });
    if (
      existsSync(
        join(
          repoRoot(),
          'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so',
        ),
      )
    ) {
      t.skip('onnxruntime-node was installed with its CUDA provider on this machine');
      return;
    }
    assert.throws(
      () => createVoiceServer(config, createLogger({ level: 'silent', format: 'json', output: 'stdout' })),
      (error: unknown) =>
        error instanceof ConfigError &&
        /^config: models\.stt\.device = "cuda" cannot be used here: onnxruntime's CUDA provider is not installed/.test(
          error.message,
        ),
    );
    const file = writeConfigFile({ models: { stt: { device: 'cuda' } } });
    const result = spawnSync(process.execPath, [join(repoRoot(), 'dist/server/main.js'), '--config', file], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /^config: models\.stt\.device = "cuda" cannot be used here: [^\n]*\n$/);
  });
});
