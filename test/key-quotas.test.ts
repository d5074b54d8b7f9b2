import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import {
  AudioEncoding,
  Code,
  createVoiceClient,
  errorReasonOf,
  type TranscribeResponse,
  type VoiceClient,
} from '../clients/node/index.js';
import { expectError } from './helpers/errors.js';
import { concat, RATE, silence, speak, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

/**
 * Per-key quotas over a real server with real engines: keys from a YAML keys file, each with
 * limits of its own or the defaults of security.rate_limit; what a key may hold at once, start a
 * minute and send as audio a minute; names, never keys, in refusals, metrics and logs.
 */
const KEYS = {
  backend: 'quota-test-backend-key-0001',
  web: 'quota-test-web-key-0002',
  listener: 'quota-test-listener-key-0003',
  plain: 'quota-test-plain-key-0004',
  tokens: 'quota-test-tokens-key-0005',
  inline: 'quota-test-inline-key-0006',
  sessions: 'quota-test-sessions-key-0007',
} as const;
const sha256 = (key: string) => createHash('sha256').update(key, 'utf8').digest('hex');
const CONFIG = {
  audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 },
  language: 'en',
};
const CHUNK_BYTES = 3200;

function writeKeysFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'voice-quota-keys-')), 'keys.yaml');
  const entries = [
    { name: 'backend', key: KEYS.backend, max_concurrent_streams: 2, max_requests_per_minute: 100 },
    { name: 'web', key: KEYS.web, max_requests_per_minute: 3 },
    { name: 'listener', key: KEYS.listener, max_audio_seconds_per_minute: 5 },
    // No limits of its own, and only the digest in the file.
    { name: 'plain', key_sha256: sha256(KEYS.plain) },
    { name: 'tokens', key: KEYS.tokens, max_concurrent_streams: 1, max_requests_per_minute: 4 },
    { name: 'sessions', key: KEYS.sessions, max_audio_seconds_per_minute: 5 },
  ];
  writeFileSync(file, stringify(entries));
  return file;
}

/** A Transcribe stream fed on demand. */
function liveTranscribe(client: VoiceClient) {
  const pending: Uint8Array[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  async function* requests() {
    yield { request: { case: 'config' as const, value: CONFIG } };
    while (true) {
      while (pending.length > 0) yield { request: { case: 'audio' as const, value: pending.shift()! } };
      if (closed) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  }
  const seen: TranscribeResponse[] = [];
  const waiters = new Set<{ count: number; resolve: () => void }>();
  const finals = () => seen.filter((r) => r.event.case === 'result' && r.event.value.isFinal).length;
  const done = (async () => {
    for await (const response of client.transcription.transcribe(requests())) {
      seen.push(response);
      for (const waiter of waiters) if (finals() >= waiter.count) waiter.resolve();
    }
  })();
  done.catch(() => {});
  return {
    send(audio: Uint8Array) {
      for (let offset = 0; offset < audio.length; offset += CHUNK_BYTES) {
        pending.push(audio.subarray(offset, offset + CHUNK_BYTES));
      }
      wake?.();
    },
    /** Resolves once `count` finals have arrived; rejects if the stream fails first. */
    finals: (count: number) =>
      Promise.race([
        new Promise<void>((resolve) => {
          if (finals() >= count) resolve();
          else waiters.add({ count, resolve });
        }),
        done.then(() => assert.fail(`the stream ended with ${finals()} finals`)),
      ]),
    end() {
      closed = true;
      wake?.();
      return done;
    },
  };
}

describe('per-key quotas', () => {
  let t: TestServer;
  const clients = new Map<string, VoiceClient>();
  const as = (key: string) => {
    let client = clients.get(key);
    if (client === undefined) {
      client = createVoiceClient({ address: t.address, apiKey: key });
      clients.set(key, client);
    }
    return client;
  };
  const held: AbortController[] = [];
  /** Opens a transcription session (a stream); resolves once the server has admitted it. */
  const hold = async (client: VoiceClient, headers?: Record<string, string>) => {
    const controller = new AbortController();
    held.push(controller);
    const iterator = client.transcription
      .startTranscriptionSession(
        { config: CONFIG },
        { signal: controller.signal, ...(headers ? { headers } : {}) },
      )
      [Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.ok(!first.done && first.value.sessionStarted, 'admitted: the session has started');
    return { end: () => controller.abort(), iterator };
  };
  const metricsText = () => t.server.metrics.registry.metrics();
  const series = async (name: string, labels: string) => {
    const line = (await metricsText()).split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };

  before(async () => {
    t = await startServerWithEngines({
      // Capacity admission is tested elsewhere; here only the keys' limits may refuse.
      performance: { max_final_delay_ms: 0 },
      security: {
        api_key_required: true,
        api_keys: [KEYS.inline],
        api_keys_file: writeKeysFile(),
        rate_limit: { max_requests_per_minute: 4 },
      },
    });
  });
  after(async () => {
    for (const controller of held) controller.abort();
    for (const client of clients.values()) client.close();
    await t?.stop();
  });

  it('holds each key to its own call rate, not another key’s', async () => {
    for (let index = 0; index < 3; index += 1) await as(KEYS.web).synthesis.listVoices({});
    const refused = await expectError(as(KEYS.web).synthesis.listVoices({}));
    assert.equal(refused.code, Code.ResourceExhausted);
    assert.equal(errorReasonOf(refused), 'RATE_LIMITED');
    assert.match(
      refused.rawMessage,
      /^the API key "web" has used its 3 calls a minute \(security\.api_keys_file\[web\]\.max_requests_per_minute\); retry in \d+ s$/,
    );
    assert.ok(Number(refused.metadata.get('grpc-retry-pushback-ms')) > 0);
    // backend has 100 a minute of its own, whatever web has used.
    for (let index = 0; index < 5; index += 1) await as(KEYS.backend).synthesis.listVoices({});
    assert.equal(await series('voice_key_refusals_total', 'key="web",limit="max_requests_per_minute"'), 1);
    assert.equal(
      await series('voice_key_refusals_total', 'key="backend",limit="max_requests_per_minute"'),
      0,
    );
  });

  it('holds each key to its own streams at once, and frees a slot when one ends', async () => {
    const first = await hold(as(KEYS.backend));
    await hold(as(KEYS.backend));
    assert.equal(await series('voice_key_active_streams', 'key="backend"'), 2);
    const third = await expectError(hold(as(KEYS.backend)));
    assert.equal(third.code, Code.ResourceExhausted);
    assert.match(
      third.rawMessage,
      /^the API key "backend" already has 2 streams open \(security\.api_keys_file\[backend\]\.max_concurrent_streams\); retry when one ends$/,
    );
    // plain has the default: no stream limit of its own, not backend's 2.
    const others = [await hold(as(KEYS.plain)), await hold(as(KEYS.plain)), await hold(as(KEYS.plain))];
    first.end();
    await first.iterator.next().catch(() => undefined);
    const again = await hold(as(KEYS.backend));
    for (const stream of [again, ...others]) stream.end();
  });

  it('gives a key without limits of its own the defaults of security.rate_limit', async () => {
    // plain made 3 session starts above; the default is 4 a minute.
    await as(KEYS.plain).synthesis.listVoices({});
    const refused = await expectError(as(KEYS.plain).synthesis.listVoices({}));
    assert.match(
      refused.rawMessage,
      /^the API key "plain" has used its 4 calls a minute \(security\.rate_limit\.max_requests_per_minute\)/,
    );
    for (let index = 0; index < 4; index += 1) await as(KEYS.inline).synthesis.listVoices({});
    const inline = await expectError(as(KEYS.inline).synthesis.listVoices({}));
    assert.match(
      inline.rawMessage,
      /^the API key "unnamed-[0-9a-f]{8}" has used its 4 calls a minute \(security\.rate_limit\.max_requests_per_minute\)/,
      'a key of security.api_keys gets the defaults and a derived name',
    );
  });

  it('refuses a new audio call once the key’s audio budget is spent, but the running stream goes on', async () => {
    const running = liveTranscribe(as(KEYS.listener));
    // 6 s of audio against a budget of 5 s a minute, then an utterance: its final means all was counted.
    running.send(toLinear16(concat(silence(6), speak('The weather is lovely today.'), silence(1))));
    await running.finals(1);
    assert.ok((await series('voice_key_audio_seconds_total', 'key="listener"')) >= 6);

    const refused = await expectError(async () => {
      for await (const _ of as(KEYS.listener).transcription.transcribe(
        (async function* () {
          yield { request: { case: 'config' as const, value: CONFIG } };
        })(),
      ));
    });
    assert.equal(refused.code, Code.ResourceExhausted);
    assert.equal(errorReasonOf(refused), 'RATE_LIMITED');
    assert.match(
      refused.rawMessage,
      /^the API key "listener" has used its 5 seconds of audio a minute \(security\.api_keys_file\[listener\]\.max_audio_seconds_per_minute\); streams in progress go on, a new one may start in \d+ s$/,
    );
    const pushback = Number(refused.metadata.get('grpc-retry-pushback-ms'));
    assert.ok(pushback > 12_000, `at 5 s a minute, more than 2 s overdrawn takes over 12 s: ${pushback} ms`);
    const file = await expectError(
      as(KEYS.listener).transcription.transcribeFile({ config: CONFIG, audio: toLinear16(silence(1)) }),
    );
    assert.equal(file.code, Code.ResourceExhausted, 'TranscribeFile sends audio too');
    await as(KEYS.listener).synthesis.listVoices({});

    // No speech is lost: the stream admitted before goes on, over budget.
    running.send(toLinear16(concat(speak('Please send me the report by Friday.'), silence(1))));
    await running.finals(2);
    await running.end();
    assert.equal(
      await series('voice_key_refusals_total', 'key="listener",limit="max_audio_seconds_per_minute"'),
      2,
    );
  });

  it('never refuses the audio of a session already open, only new sessions, once the budget is spent', async () => {
    const client = as(KEYS.sessions);
    const iterator = client.transcription
      .startTranscriptionSession({ config: CONFIG })
      [Symbol.asyncIterator]();
    const first = await iterator.next();
    const sessionId = first.done ? '' : (first.value.sessionStarted?.sessionId ?? '');
    assert.ok(sessionId, 'the session has started');
    const nextFinal = async () => {
      while (true) {
        const next = await iterator.next();
        assert.ok(!next.done, 'the session ended before its final');
        if (next.value.event.case === 'result' && next.value.event.value.isFinal)
          return next.value.event.value;
      }
    };
    let sequenceNumber = 0;
    const append = async (audio: Uint8Array, end = false) => {
      for (let offset = 0; offset < audio.length; offset += 16_000) {
        sequenceNumber += 1;
        const last = offset + 16_000 >= audio.length;
        const answer = await client.transcription.appendSessionAudio({
          sessionId,
          sequenceNumber,
          audio: audio.subarray(offset, offset + 16_000),
          endOfAudio: end && last,
        });
        assert.equal(answer.acceptedThrough, sequenceNumber);
      }
    };
    await append(toLinear16(concat(silence(6), speak('The weather is lovely today.'), silence(1))));
    await nextFinal();
    const refused = await expectError(hold(client));
    assert.match(refused.rawMessage, /^the API key "sessions" has used its 5 seconds of audio a minute/);
    // The open session's audio still goes through, every chunk of it, and is transcribed.
    await append(toLinear16(concat(speak('Please send me the report by Friday.'), silence(1))), true);
    await nextFinal();
    // After the last final only the commit of the whole audio may come, then the end.
    let next = await iterator.next();
    while (!next.done && next.value.event.case === 'audioCommitted') next = await iterator.next();
    assert.equal(next.done, true, 'the session ends with its audio');
  });

  it('counts a client token against the quotas of the key that minted it', async () => {
    const minted = await as(KEYS.tokens).access.createClientToken({});
    const bearer = { authorization: `Bearer ${minted.token}` };
    const browser = createVoiceClient({ address: t.address });
    clients.set('browser', browser);
    const stream = await hold(as(KEYS.tokens));
    const byToken = await expectError(hold(browser, bearer));
    assert.match(
      byToken.rawMessage,
      /^the API key "tokens" behind this client token already has 1 streams open/,
    );
    stream.end();
    // Two call starts so far (the mint and the session; a refused call takes none): two more pass.
    await browser.synthesis.listVoices({}, { headers: bearer });
    await browser.synthesis.listVoices({}, { headers: bearer });
    const limited = await expectError(browser.synthesis.listVoices({}, { headers: bearer }));
    assert.match(
      limited.rawMessage,
      /^the API key "tokens" behind this client token has used its 4 calls a minute \(security\.api_keys_file\[tokens\]\.max_requests_per_minute\)/,
    );
  });

  it('names keys by name in metrics and logs, never by the key or its digest', async () => {
    const text = await metricsText();
    const logs = t.logs.text();
    for (const key of Object.values(KEYS)) {
      for (const [where, body] of [
        ['metrics', text],
        ['logs', logs],
      ] as const) {
        assert.ok(!body.includes(key), `${where} hold a key`);
        assert.ok(!body.includes(sha256(key).slice(0, 16)), `${where} hold a key's digest`);
      }
    }
    const callers = new Set(
      t.logs
        .records()
        .filter((record) => record.msg === 'call finished')
        .map((record) => record.caller),
    );
    for (const name of ['backend', 'web', 'listener', 'plain', 'tokens', 'sessions']) {
      assert.ok(callers.has(name), name);
    }
    const refusedWeb = t.logs
      .records()
      .find((record) => record.msg === 'call finished' && record.code === 'RESOURCE_EXHAUSTED');
    assert.ok(refusedWeb?.caller !== undefined, 'a refused call names its key too');
    const minted = t.logs.records().find((record) => record.msg === 'client token minted');
    assert.equal(minted?.caller, 'tokens');
  });
});
