import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, redactedConfig } from '../server/config.js';
import { repoRoot } from './helpers/paths.js';
import { writeConfigFile } from './helpers/test-server.js';

const load = (sections: Record<string, unknown> | undefined, env: Record<string, string> = {}) =>
  loadConfig({ file: sections === undefined ? undefined : writeConfigFile(sections), env });

const failure = (sections: Record<string, unknown> | undefined, env: Record<string, string> = {}): string => {
  try {
    load(sections, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    assert.doesNotMatch(error.message, /\n/, 'the message is one line');
    return error.message;
  }
  assert.fail('the config was accepted');
};

describe('config', () => {
  it('runs on defaults with no file and no environment', () => {
    const config = load(undefined);
    assert.equal(config.service.port, 8899);
    assert.equal(config.monitoring.prometheus_port, 9090);
    assert.equal(config.monitoring.metrics_endpoint, '/metrics');
    assert.equal(config.logging.level, 'info');
    assert.equal(config.security.rate_limit.max_requests_per_minute, 3000);
    assert.equal(config.security.rate_limit.max_audio_seconds_per_minute, 12_000);
    assert.equal(
      config.security.rate_limit.max_concurrent_streams,
      undefined,
      'one key may hold every stream the server serves',
    );
    assert.equal(config.models.tts.max_text_chars, 5000);
    assert.equal(config.service.drain_grace_seconds, 30);
    assert.equal(config.service.drain_flush_seconds, 10);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.service.cors_origins));
  });

  it('reads the sections of the deployment guide from YAML', () => {
    const config = load({
      service: { host: '127.0.0.1', port: 9000, timeout: 45, cors_origins: ['https://app.example'] },
      performance: { workers: 3, request_queue_size: 50 },
      logging: { level: 'warn' },
      monitoring: { prometheus_port: 9191 },
      security: { allowed_ips: ['10.0.0.0/8'] },
    });
    assert.equal(config.service.port, 9000);
    assert.equal(config.service.timeout, 45);
    assert.deepEqual(config.service.cors_origins, ['https://app.example']);
    assert.equal(config.performance.workers, 3);
    assert.equal(config.performance.request_queue_size, 50);
    assert.equal(config.performance.max_concurrent_requests, 100);
    assert.equal(config.monitoring.prometheus_port, 9191);
  });

  it('reads the per-key limits of security.rate_limit, with their ranges', () => {
    const set = load({
      security: { rate_limit: { max_concurrent_streams: 7, max_audio_seconds_per_minute: 60 } },
    });
    assert.equal(set.security.rate_limit.max_concurrent_streams, 7);
    assert.equal(set.security.rate_limit.max_audio_seconds_per_minute, 60);
    assert.match(
      failure({ security: { rate_limit: { max_audio_seconds_per_minute: 0 } } }),
      /^config: security\.rate_limit\.max_audio_seconds_per_minute = 0 \(in .*\) is invalid; expected an integer from 1 to 100000000$/,
    );
  });

  it('lets the guide environment variables override the file', () => {
    const config = load(
      { service: { port: 9000 }, performance: { workers: 3 }, logging: { level: 'info' } },
      {
        VOICE_PORT: '9500',
        MAX_WORKERS: '4',
        LOG_LEVEL: 'WARNING',
        TIMEOUT: '60',
        PROMETHEUS_ENABLED: 'false',
        CORS_ORIGINS: 'https://a.example, https://b.example',
        API_KEY: 'k1,k2',
      },
    );
    assert.equal(config.service.port, 9500);
    assert.equal(config.performance.workers, 4);
    assert.equal(config.logging.level, 'warn');
    assert.equal(config.service.timeout, 60);
    assert.equal(config.monitoring.enabled, false);
    assert.deepEqual(config.service.cors_origins, ['https://a.example', 'https://b.example']);
    assert.deepEqual(config.security.api_keys, ['k1', 'k2']);
    assert.equal(config.security.api_key_required, true, 'a key from API_KEY turns the requirement on');
  });

  it('names the key, the value, its source and the allowed range for a bad value', () => {
    assert.equal(
      failure(undefined, { VOICE_PORT: '70000' }),
      'config: service.port = 70000 (from VOICE_PORT) is invalid; expected an integer from 0 to 65535',
    );
    assert.match(
      failure(undefined, { MAX_WORKERS: 'many' }),
      /^config: performance\.workers = "many" \(from MAX_WORKERS\) is invalid; expected an integer from 1 to 64$/,
    );
    assert.match(
      failure({ logging: { level: 'loud' } }),
      /^config: logging\.level = "loud" \(in .*config\.yaml\) is invalid; expected one of trace, debug, info, warn, error, fatal, silent$/,
    );
    assert.match(
      failure({ models: { tts: { speed: 3 } } }),
      /models\.tts\.speed = 3 .* expected a number from 0\.5 to 2$/,
    );
    assert.match(
      failure({ service: { drain_flush_seconds: 601 } }),
      /^config: service\.drain_flush_seconds = 601 \(in .*config\.yaml\) is invalid; expected an integer from 0 to 600$/,
    );
    assert.match(
      failure(undefined, { PROMETHEUS_ENABLED: 'maybe' }),
      /monitoring\.enabled = "maybe" \(from PROMETHEUS_ENABLED\).*true or false/,
    );
  });

  it('rejects unknown keys and lists the allowed ones', () => {
    const message = failure({ service: { prot: 1 } });
    assert.match(
      message,
      /^config: unknown key service\.prot in .*; allowed keys here: host, port, timeout,/,
    );
    assert.match(
      failure({ servce: {} }),
      /unknown key servce .* allowed keys here: service, models, performance, logging, monitoring, security$/,
    );
  });

  it('reports unreadable and malformed files in one line', () => {
    assert.match(
      failure(undefined, { VOICE_CONFIG: '/nonexistent/voice.yaml' }),
      /^config: cannot read \/nonexistent\/voice\.yaml: ENOENT$/,
    );
    const broken = writeConfigFile({});
    spawnSync('sh', ['-c', `printf 'service: [\\n' > ${broken}`]);
    assert.match(failure(undefined, { VOICE_CONFIG: broken }), /is not valid YAML/);
  });

  it('turns the web port on at 8080 with the demo page, and takes VOICE_WEB_PORT and VOICE_WEB_ENABLED', () => {
    const defaults = load(undefined);
    assert.equal(defaults.service.web_enabled, true);
    assert.equal(defaults.service.web_port, 8080);
    assert.equal(defaults.service.demo_page, true);
    const fromEnv = load({ service: { web_port: 8081 } }, { VOICE_WEB_PORT: '9100' });
    assert.equal(fromEnv.service.web_port, 9100);
    assert.equal(load(undefined, { VOICE_WEB_ENABLED: 'false' }).service.web_enabled, false);
    assert.equal(
      load({ service: { web_port: 0 } }).service.web_port,
      0,
      '0 is an ephemeral port, as for every port',
    );
    assert.equal(
      failure(undefined, { VOICE_WEB_PORT: '80800' }),
      'config: service.web_port = 80800 (from VOICE_WEB_PORT) is invalid; expected an integer from 0 to 65535',
    );
  });

  it('takes a Kokoro voice as the default only when Kokoro is enabled with that voice', () => {
    const kokoro = { enabled: true, voices: ['af_heart', 'bm_george'] };
    const config = load({ models: { tts: { voice: 'kokoro:bm_george', kokoro } } });
    assert.equal(config.models.tts.kokoro.model, 'onnx-community/Kokoro-82M-v1.0-ONNX-timestamped');
    assert.equal(config.models.tts.kokoro.dtype, 'fp32');
    assert.match(
      failure({ models: { tts: { voice: 'kokoro:af_heart' } } }),
      /^config: models\.tts\.voice = "kokoro:af_heart" \(in .*\) is invalid; expected a voice of models\.tts\.kokoro \(enabled: true, with "af_heart" among its voices\)$/,
    );
    assert.match(
      failure({ models: { tts: { voice: 'kokoro:af_sky', kokoro } } }),
      /models\.tts\.voice = "kokoro:af_sky" .*with "af_sky" among its voices/,
    );
    assert.match(
      failure({ models: { tts: { kokoro: { voices: ['Heart'] } } } }),
      /^config: models\.tts\.kokoro\.voices\.0 = "Heart" .* expected a Kokoro voice name such as af_heart/,
    );
  });

  it('takes browser origins, each a scheme and host, or *', () => {
    assert.deepEqual(
      load({ service: { cors_origins: ['http://127.0.0.1:5173', '*'] } }).service.cors_origins,
      ['http://127.0.0.1:5173', '*'],
    );
    assert.match(
      failure({ service: { cors_origins: ['https://app.example/page'] } }),
      /^config: service\.cors_origins\.0 = "https:\/\/app\.example\/page" \(in .*\) is invalid; expected an origin such as https:\/\/app\.example/,
    );
    assert.match(
      failure(undefined, { CORS_ORIGINS: 'app.example' }),
      /service\.cors_origins\.0 = "app\.example" \(from CORS_ORIGINS\)/,
    );
  });

  it('reads the client token settings, and never shows the secret', () => {
    const defaults = load(undefined).security.client_tokens;
    assert.deepEqual(defaults, { ttl_seconds: 300, max_ttl_seconds: 3600 });
    const secret = 'a-token-secret-of-enough-bytes-0123456789';
    const config = load(
      { security: { client_tokens: { ttl_seconds: 600 } } },
      { VOICE_TOKEN_SECRET: secret },
    );
    assert.equal(config.security.client_tokens.secret, secret);
    assert.equal(config.security.client_tokens.ttl_seconds, 600);
    assert.ok(!JSON.stringify(redactedConfig(config)).includes(secret), 'redacted for the start-up log');
    const short = failure(undefined, { VOICE_TOKEN_SECRET: 'short-secret' });
    assert.equal(
      short,
      'config: security.client_tokens.secret = <redacted> (from VOICE_TOKEN_SECRET) is invalid; expected a secret of at least 32 bytes (make one with: openssl rand -base64 32)',
    );
    assert.match(
      failure({ security: { client_tokens: { ttl_seconds: 10 } } }),
      /ttl_seconds = 10 .* from 30 to 3600$/,
    );
    assert.equal(
      failure({ security: { client_tokens: { ttl_seconds: 900, max_ttl_seconds: 600 } } }),
      'config: security.client_tokens.ttl_seconds = 900 is longer than security.client_tokens.max_ttl_seconds = 600',
    );
    const keys = failure({ security: { api_keys: ['good-key', ''] } });
    assert.match(keys, /^config: security\.api_keys\.1 = <redacted>/, 'API keys are not shown either');
  });

  it('reads the limits of transcription sessions', () => {
    assert.deepEqual(load(undefined).service.sessions, {
      gap_timeout_ms: 2000,
      idle_timeout_ms: 30_000,
      max_per_caller: 20,
    });
    assert.match(
      failure({ service: { sessions: { gap_timeout_ms: 10 } } }),
      /service\.sessions\.gap_timeout_ms = 10/,
    );
  });

  it('reads the retry schedule of model pools that fail to load, the longest delay no shorter than the first', () => {
    assert.deepEqual(load(undefined).models.load_retry, { initial_delay_ms: 1000, max_delay_ms: 60_000 });
    assert.deepEqual(
      load({ models: { load_retry: { initial_delay_ms: 500, max_delay_ms: 500 } } }).models.load_retry,
      { initial_delay_ms: 500, max_delay_ms: 500 },
    );
    assert.match(
      failure({ models: { load_retry: { initial_delay_ms: 5000, max_delay_ms: 1000 } } }),
      /^config: models\.load_retry\.max_delay_ms = 1000 \(in .*\) is invalid; expected an integer no less than models\.load_retry\.initial_delay_ms$/,
    );
    assert.match(
      failure({ models: { load_retry: { initial_delay_ms: 0 } } }),
      /^config: models\.load_retry\.initial_delay_ms = 0 \(in .*\) is invalid; expected an integer from 10 to 3600000$/,
    );
  });

  it('requires a key when keys are required', () => {
    assert.match(
      failure({ security: { api_key_required: true } }),
      /api_key_required is true but no key is configured/,
    );
  });

  it('stops the server at start-up with exit code 2 and one line on stderr', () => {
    const main = join(repoRoot(), 'dist/server/main.js');
    const result = spawnSync(process.execPath, [main], {
      env: { ...process.env, VOICE_PORT: 'eighty', VOICE_CONFIG: '' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(result.status, 2);
    assert.equal(
      result.stderr,
      'config: service.port = "eighty" (from VOICE_PORT) is invalid; expected an integer from 0 to 65535\n',
    );
  });
});

describe('config.example.yaml', () => {
  it('lists every key with its default', () => {
    const example = loadConfig({ file: join(repoRoot(), 'config.example.yaml'), env: {} });
    assert.deepEqual(example, loadConfig({ env: {} }));
  });
});

describe('start-up with bad security files', () => {
  it('stops with exit code 2 and one line when a TLS file is not a certificate', () => {
    const file = writeConfigFile({
      security: { tls: { cert_file: '/etc/hostname', key_file: '/etc/hostname' } },
    });
    const result = spawnSync(process.execPath, [join(repoRoot(), 'dist/server/main.js'), '--config', file], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(result.status, 2);
    assert.match(
      result.stderr,
      /^config: security\.tls\.cert_file = "\/etc\/hostname" is not a valid PEM certificate[^\n]*\n$/,
    );
  });
});
