import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAudioEncoder } from '../server/pipeline/audio-encode.js';
import { runCli } from './helpers/cli.js';
import { ffmpegEncode } from './helpers/opus.js';
import { concat, RATE, readWav, rms, silence, speak } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

describe('voice CLI', () => {
  let t: TestServer;
  const dir = mkdtempSync(join(tmpdir(), 'voice-cli-'));
  before(async () => {
    t = await startServerWithEngines();
  });
  after(() => t.stop());

  it('health prints the status and exits 0 when SERVING', async () => {
    const result = await runCli(['-a', t.address, 'health']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '(server): SERVING\n');
  });

  it('voices lists the voices, the default marked', async () => {
    const result = await runCli(['-a', t.address, 'voices', '--language', 'en']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout.split('\n')[0] ?? '', /^\* espeak:en-us +en-US +22050 Hz/);
  });

  it('speak writes a WAV file that players read to its end', async () => {
    const out = join(dir, 'hello.wav');
    const result = await runCli([
      '-a',
      t.address,
      'speak',
      'Hello there. How are you today?',
      '-o',
      out,
      '--rate',
      '16000',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /wrote .*hello\.wav: \d+\.\d\d s at 16000 Hz/);
    const bytes = readFileSync(out);
    assert.equal(bytes.readUInt32LE(4), bytes.length - 8, 'the RIFF length is fixed up');
    const samples = readWav(bytes);
    assert.ok(samples.length > RATE, 'more than a second of speech');
    assert.ok(rms(samples) > 0.02, 'not silent');
  });

  it('speak --timing writes the words and visemes with their times beside the audio', async () => {
    const out = join(dir, 'timed.wav');
    const timingPath = join(dir, 'timed.json');
    const text = 'Good morning, your table is ready.';
    const result = await runCli(['-a', t.address, 'speak', text, '-o', out, '--timing', timingPath]);
    assert.equal(result.code, 0, result.stderr);
    const timing = JSON.parse(readFileSync(timingPath, 'utf8')) as {
      sampleRate: number;
      words: { text: string; textStart: number; textEnd: number; start: number; end: number }[];
      visemes: { azure: number; oculus: string; start: number; end: number }[];
    };
    const seconds = readWav(readFileSync(out)).length / timing.sampleRate;
    assert.deepEqual(
      timing.words.map((w) => w.text),
      ['Good', 'morning', 'your', 'table', 'is', 'ready'],
    );
    for (const w of timing.words) assert.equal([...text].slice(w.textStart, w.textEnd).join(''), w.text);
    assert.equal(timing.visemes[0]?.start, 0);
    for (const [i, v] of timing.visemes.entries()) {
      if (i > 0) assert.equal(v.start, timing.visemes[i - 1]?.end, 'back to back');
    }
    assert.ok(Math.abs((timing.visemes.at(-1)?.end ?? 0) - seconds) < 1e-3, 'visemes cover the audio');
  });

  it('transcribe sends an Ogg or WebM Opus file as it is and prints the same finals as for the WAV', async () => {
    const wav = createAudioEncoder({ encoding: 'wav', sampleRate: RATE }).encode(
      concat(silence(0.3), speak('Good morning everyone.'), silence(1)),
    );
    for (const format of ['ogg', 'webm'] as const) {
      const file = join(dir, `speech.${format}`);
      writeFileSync(file, ffmpegEncode(wav, format));
      const result = await runCli(['-a', t.address, 'transcribe', file]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout.trim(), /^\[00:\d\d\.\d\d – 00:\d\d\.\d\d\] hello world$/, format);
    }
  });

  it('transcribe streams a WAV file and prints each final with its times', async () => {
    const file = join(dir, 'speech.wav');
    const sentence = speak('Good morning everyone.');
    writeFileSync(
      file,
      createAudioEncoder({ encoding: 'wav', sampleRate: RATE }).encode(
        concat(silence(0.3), sentence, silence(1), sentence, silence(0.5)),
      ),
    );
    const result = await runCli(['-a', t.address, 'transcribe', file, '--no-realtime']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    for (const line of lines) assert.match(line, /^\[00:\d\d\.\d\d – 00:\d\d\.\d\d\] hello world$/);
  });

  it('says in one line when the server cannot be reached', async () => {
    const result = await runCli(['-a', '127.0.0.1:1', 'health']);
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      'voice: cannot reach the server at 127.0.0.1:1 (ECONNREFUSED); is it running? (set --address or VOICE_ADDRESS)\n',
    );
  });

  it('says in one line when a file is not valid audio', async () => {
    const file = join(dir, 'not-audio.wav');
    writeFileSync(file, 'this is text, not audio');
    const result = await runCli(['-a', t.address, 'transcribe', file]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /^voice: .*not-audio\.wav is not a valid WAV file: .+\n$/);
  });

  it('reports server-side errors with their status and reason', async () => {
    const result = await runCli([
      '-a',
      t.address,
      'speak',
      'Hi.',
      '-o',
      join(dir, 'x.wav'),
      '--voice',
      'espeak:nope',
    ]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^voice: INVALID_ARGUMENT: config\.voice: unknown voice "espeak:nope"; valid ids: espeak:en-us.* \[UNKNOWN_RESOURCE\]\n$/,
    );
  });
});
