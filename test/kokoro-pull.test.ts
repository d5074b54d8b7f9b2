import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type GeneratedKokoroModel, generateKokoroModel } from './fixtures/kokoro-model.js';
import { runCli } from './helpers/cli.js';
import { type HubMirror, startHubMirror } from './helpers/hub-mirror.js';
import { writeConfigFile } from './helpers/test-server.js';

/** `voice models pull` for Kokoro, from a stand-in for the hub on loopback. */
describe('voice models pull with Kokoro enabled', () => {
  let hub: HubMirror;
  let source: GeneratedKokoroModel;

  before(async () => {
    const mirror = mkdtempSync(join(tmpdir(), 'voice-hub-'));
    source = await generateKokoroModel({ root: mirror, voices: ['af_heart', 'bm_george', 'ef_dora'] });
    hub = await startHubMirror(mirror);
  });
  after(() => hub.close());

  const configFor = (cacheDir: string, kokoro: Record<string, unknown>) =>
    writeConfigFile({
      models: {
        cache_dir: cacheDir,
        hub_url: hub.url,
        tts: { kokoro: { enabled: true, model: source.modelId, ...kokoro } },
      },
    });

  it('lists the graph, vocab and configured voice files as missing, then pulls just those', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'voice-cache-'));
    const config = configFor(cacheDir, { voices: ['af_heart', 'bm_george'] });
    const listed = await runCli(['models', 'list', '--config', config]);
    assert.equal(listed.code, 1);
    assert.match(
      listed.stdout,
      new RegExp(
        `${source.modelId} +\\(neural voice\\) +${cacheDir}/${source.modelId} +missing tokenizer\\.json`,
      ),
    );
    const pulled = await runCli(['models', 'pull', source.modelId, '--config', config]);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stderr, /fetched 4 file\(s\)/);
    for (const file of ['tokenizer.json', 'onnx/model.onnx', 'voices/af_heart.bin', 'voices/bm_george.bin']) {
      assert.deepEqual(
        readFileSync(join(cacheDir, source.modelId, file)),
        readFileSync(join(source.folder, file)),
        file,
      );
    }
    assert.ok(
      !hub.requested.some((path) => path.includes('ef_dora')),
      'voices not configured are not fetched',
    );
    const again = await runCli(['models', 'list', '--config', config]);
    assert.match(again.stdout, new RegExp(`${source.modelId} .* present`));
  });

  it('pulls the graph of the configured dtype', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'voice-cache-'));
    const config = configFor(cacheDir, { dtype: 'q8' });
    const pulled = await runCli(['models', 'pull', source.modelId, '--config', config]);
    assert.equal(pulled.code, 1, 'the mirror has no quantized graph');
    assert.match(pulled.stderr, /onnx\/model_quantized\.onnx: .*404/);
  });
});
