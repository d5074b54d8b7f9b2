import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type GeneratedMoonshineModel, generateMoonshineModel } from './fixtures/moonshine-model.js';
import { type GeneratedWhisperModel, generateWhisperModel } from './fixtures/whisper-model.js';
import { runCli } from './helpers/cli.js';
import { type HubMirror, startHubMirror } from './helpers/hub-mirror.js';
import { writeConfigFile } from './helpers/test-server.js';

/** A stand-in for the model hub on loopback, serving a generated model in the hub's URL layout. */
describe('voice models', () => {
  let hub: HubMirror;
  let hubUrl: string;
  let source: GeneratedWhisperModel;
  let english: GeneratedMoonshineModel;

  before(async () => {
    const mirror = mkdtempSync(join(tmpdir(), 'voice-hub-'));
    source = await generateWhisperModel({ root: mirror, preset: 'minimal' });
    // The English model as the hub serves it today: config.json with the old key names.
    english = await generateMoonshineModel({
      root: mirror,
      modelId: 'cortex-test/moonshine-published',
      legacyConfig: true,
    });
    hub = await startHubMirror(mirror);
    hubUrl = hub.url;
  });
  after(() => hub.close());

  const configFor = (cacheDir: string, model = source.modelId, englishModel = '') =>
    writeConfigFile({
      models: {
        cache_dir: cacheDir,
        hub_url: hubUrl,
        stt: { model, english_model: englishModel, dtype: 'fp32' },
      },
    });

  it('lists missing models, pulls them with progress, then lists them as present', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'voice-cache-'));
    const config = configFor(cacheDir);
    const before = await runCli(['models', 'list', '--config', config]);
    assert.equal(before.code, 1);
    assert.match(
      before.stdout,
      new RegExp(
        `${source.modelId} +\\(speech recognition\\) +${cacheDir}/${source.modelId} +missing config\\.json`,
      ),
    );

    const pulled = await runCli(['models', 'pull', '--config', config]);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stderr, /fetched 7 file\(s\)/);
    assert.match(pulled.stderr, /100%/, 'a progress bar is drawn');
    for (const file of source.files) {
      assert.deepEqual(
        readFileSync(join(cacheDir, source.modelId, file)),
        readFileSync(join(source.folder, file)),
        file,
      );
    }
    const listed = await runCli(['models', 'list', '--config', config]);
    assert.equal(listed.code, 0);
    assert.match(listed.stdout, /present/);

    const again = await runCli(['models', 'pull', '--config', config]);
    assert.match(again.stderr, /already present/);
  });

  it('pulls the English model too, and rewrites its config.json with the keys the library reads', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'voice-cache-'));
    const config = configFor(cacheDir, source.modelId, english.modelId);
    const listed = await runCli(['models', 'list', '--config', config]);
    assert.match(
      listed.stdout,
      new RegExp(`${english.modelId} +\\(speech recognition\\) .* missing config\\.json`),
    );
    const pulled = await runCli(['models', 'pull', english.modelId, '--config', config]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const installed = JSON.parse(readFileSync(join(cacheDir, english.modelId, 'config.json'), 'utf8'));
    const published = JSON.parse(readFileSync(join(english.folder, 'config.json'), 'utf8'));
    assert.equal(published.decoder_num_hidden_layers, undefined, 'the hub serves the old keys');
    assert.equal(installed.decoder_num_hidden_layers, published.num_hidden_layers);
    assert.equal(installed.encoder_num_key_value_heads, published.num_key_value_heads);
    for (const file of english.files.filter((name) => name !== 'config.json')) {
      assert.deepEqual(
        readFileSync(join(cacheDir, english.modelId, file)),
        readFileSync(join(english.folder, file)),
        file,
      );
    }
  });

  it('fails in one line and leaves no partial file when the hub lacks the model', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'voice-cache-'));
    const result = await runCli(['models', 'pull', '--config', configFor(cacheDir, 'nobody/no-such-model')]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /voice: cannot pull nobody\/no-such-model from http:\/\/127\.0\.0\.1:\d+: .*404/,
    );
    assert.deepEqual(readdirSync(cacheDir), []);
  });

  it('refuses ids that are not configured', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'voice-cache-'));
    const result = await runCli(['models', 'pull', 'someone/else', '--config', configFor(cacheDir)]);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /someone\/else is not a configured model; configured: cortex-test\/whisper-minimal-random/,
    );
  });
});
