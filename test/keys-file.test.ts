import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../server/config.js';
import { createAccessControl } from '../server/edge/access-control.js';
import { loadApiKeys } from '../server/edge/api-keys.js';
import { createClientTokens } from '../server/edge/client-token.js';
import { Reason } from '../server/errors.js';
import { createMetrics } from '../server/observability/metrics.js';
import { repoRoot } from './helpers/paths.js';
import { testConfig, writeConfigFile } from './helpers/test-server.js';

/** security.api_keys_file: both formats, what start-up refuses, and what a refusal tells the caller. */
const SECRET_KEY = 'keys-file-test-secret-key-value';
const sha256 = (key: string) => createHash('sha256').update(key, 'utf8').digest('hex');

function keysFile(content: string, name = 'keys.yaml'): string {
  const file = join(mkdtempSync(join(tmpdir(), 'voice-keys-file-')), name);
  writeFileSync(file, content);
  return file;
}

const security = (file: string, extra: Record<string, unknown> = {}) =>
  testConfig({ security: { api_key_required: true, api_keys_file: file, ...extra } }).security;

function failure(content: string): string {
  const file = keysFile(content);
  try {
    loadApiKeys(security(file));
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.doesNotMatch(error.message, /\n/, 'one line');
    assert.ok(!error.message.includes(SECRET_KEY), 'the key is never quoted');
    assert.ok(error.message.startsWith(`config: security.api_keys_file = ${JSON.stringify(file)}`));
    return error.message.slice(`config: security.api_keys_file = ${JSON.stringify(file)}`.length);
  }
  assert.fail('the keys file was accepted');
}

describe('keys file', () => {
  it('reads named keys with limits, by key or by its SHA-256, and the same key by either', () => {
    const file = keysFile(
      [
        '- name: backend',
        `  key: ${SECRET_KEY}`,
        '  max_concurrent_streams: 80',
        '- name: web.demo',
        `  key_sha256: ${sha256('another-key').toUpperCase()}`,
        '  max_audio_seconds_per_minute: 600',
      ].join('\n'),
    );
    const keys = loadApiKeys(security(file, { api_keys: ['inline-key', SECRET_KEY] }));
    const backend = keys.account(keys.identify(SECRET_KEY) ?? '');
    assert.deepEqual(backend && { name: backend.name, limits: backend.limits }, {
      name: 'backend',
      limits: { max_concurrent_streams: 80 },
    });
    assert.equal(keys.account(keys.identify('another-key') ?? '')?.name, 'web.demo');
    const inline = keys.account(keys.identify('inline-key') ?? '');
    assert.equal(inline?.name, `unnamed-${sha256('inline-key').slice(0, 8)}`);
    assert.deepEqual(inline?.limits, {});
    assert.equal(keys.identify('not-a-key'), undefined);
  });

  it('keeps reading one key per line from any other file, each named after its digest', () => {
    const file = keysFile('# comment\nkey-one\n\n  key-two  \nkey-one\n', 'keys.txt');
    const keys = loadApiKeys(security(file));
    assert.equal(
      keys.account(keys.identify('key-two') ?? '')?.name,
      `unnamed-${sha256('key-two').slice(0, 8)}`,
    );
    assert.ok(keys.identify('key-one'));
  });

  it('stops start-up naming the file, the entry and the field, with what is allowed', () => {
    assert.match(
      failure(`- name: backend\n  key: ${SECRET_KEY}\n  max_concurrent_streams: 0\n`),
      /^: entry 1 \(name "backend"\): max_concurrent_streams = 0 is invalid; expected an integer from 1 to 100000$/,
    );
    assert.match(
      failure(`- name: a\n  key: k1\n- name: b\n  key: ${SECRET_KEY}\n  max_streams: 5\n`),
      /^: entry 2 \(name "b"\): unknown field max_streams; allowed fields: name, key, key_sha256, max_concurrent_streams, max_requests_per_minute, max_audio_seconds_per_minute$/,
    );
    assert.match(
      failure(`- key: ${SECRET_KEY}\n`),
      /^: entry 1: name is missing; expected a name of 1 to 64/,
    );
    assert.match(failure('- name: "has space"\n  key: k\n'), /^: entry 1: name = "has space" is invalid/);
    assert.match(
      failure(`- name: a\n  key: ${SECRET_KEY}\n  key_sha256: ${sha256(SECRET_KEY)}\n`),
      /^: entry 1 \(name "a"\): give exactly one of key and key_sha256$/,
    );
    assert.match(failure('- name: a\n'), /give exactly one of key and key_sha256/);
    assert.match(
      failure(`- name: a\n  key_sha256: ${SECRET_KEY}\n`),
      /^: entry 1 \(name "a"\): key_sha256 = <redacted> is invalid; expected the SHA-256 of the key as 64 hex digits/,
    );
    assert.match(
      failure('- name: a\n  key: 12345\n'),
      /key = <redacted> is invalid; expected the key as a string/,
    );
    assert.match(
      failure(`- name: a\n  key: k1\n- name: a\n  key: ${SECRET_KEY}\n`),
      /^: entries 1 and 2 have the same name "a"$/,
    );
    assert.match(
      failure(`- name: a\n  key: ${SECRET_KEY}\n- name: b\n  key_sha256: ${sha256(SECRET_KEY)}\n`),
      /^: entries 1 and 2 hold the same key$/,
    );
    assert.match(failure('backend: key\n'), /^ must hold a list of keys/);
    assert.match(failure('- name: [\n'), /^ is not valid YAML: /);
  });

  it('exits at start-up with code 2 and the keys file error on stderr', () => {
    const file = keysFile('- name: a\n  key: k\n  max_requests_per_minute: -1\n');
    const config = writeConfigFile({ security: { api_key_required: true, api_keys_file: file } });
    const result = spawnSync(
      process.execPath,
      [join(repoRoot(), 'dist/server/main.js'), '--config', config],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    assert.equal(result.status, 2);
    assert.match(
      result.stderr,
      /^config: security\.api_keys_file = ".*keys\.yaml": entry 1 \(name "a"\): max_requests_per_minute = -1 is invalid; expected an integer from 1 to 1000000\n$/,
    );
  });
});

describe('quota refusals', () => {
  const request = (metadata: Record<string, string>, path = '/cortex.voice.v1.Synthesis/SynthesizeText') => ({
    path,
    streaming: true,
    metadata: new Map(Object.entries(metadata)),
    remoteAddress: '127.0.0.1',
    forwardedFor: [],
  });

  it('carry ErrorInfo metadata naming the limit, its config key and the key, and are counted per key name', async () => {
    const file = keysFile(`- name: backend\n  key: ${SECRET_KEY}\n  max_concurrent_streams: 1\n`);
    const metrics = createMetrics();
    const access = createAccessControl({
      security: security(file, { rate_limit: { max_requests_per_minute: 2 } }),
      apiKeys: loadApiKeys(security(file)),
      metrics,
    });
    const first = access.admit(request({ 'x-api-key': SECRET_KEY }));
    assert.ok(!('refusal' in first));
    const second = access.admit(request({ 'x-api-key': SECRET_KEY }));
    assert.ok('refusal' in second);
    assert.equal(second.refusal.reason, Reason.RateLimited);
    assert.deepEqual(second.refusal.info, {
      limit: 'security.api_keys_file[backend].max_concurrent_streams',
      limit_value: '1',
      key_name: 'backend',
    });
    first.release();
    access.admit({ ...request({ 'x-api-key': SECRET_KEY }), streaming: false });
    const rate = access.admit({ ...request({ 'x-api-key': SECRET_KEY }), streaming: false });
    assert.ok('refusal' in rate);
    assert.deepEqual(rate.refusal.info, {
      limit: 'security.rate_limit.max_requests_per_minute',
      limit_value: '2',
      key_name: 'backend',
    });
    const anonymous = createAccessControl({
      security: testConfig({ security: { rate_limit: { max_requests_per_minute: 1 } } }).security,
      apiKeys: loadApiKeys(testConfig().security),
      metrics,
    });
    anonymous.admit(request({}));
    const byAddress = anonymous.admit(request({}));
    assert.ok('refusal' in byAddress);
    assert.equal(byAddress.refusal.info.key_name, undefined, 'no key, no key name');
    const text = await metrics.registry.metrics();
    assert.match(text, /voice_key_refusals_total\{key="backend",limit="max_concurrent_streams"\} 1/);
    assert.match(text, /voice_key_refusals_total\{key="anonymous",limit="max_requests_per_minute"\} 1/);
    assert.match(text, /voice_key_active_streams\{key="backend"\} 0/);
  });

  it('refuse the tokens of a key that is no longer configured', () => {
    const tokens = createClientTokens({ secret: 'quota-test-secret-0123456789-abcdefghij', ttlSeconds: 300 });
    const file = keysFile(`- name: backend\n  key: ${SECRET_KEY}\n`);
    const access = createAccessControl({
      security: security(file),
      apiKeys: loadApiKeys(security(file)),
      tokens,
    });
    const { token } = tokens.mint({ caller: { id: 'key:0000000000000000', via: 'api-key' } });
    const verdict = access.admit(request({ authorization: `Bearer ${token}` }));
    assert.ok('refusal' in verdict);
    assert.equal(verdict.refusal.reason, Reason.Unauthenticated);
    assert.match(
      verdict.refusal.rawMessage,
      /the API key that minted this client token is no longer accepted/,
    );
  });
});
