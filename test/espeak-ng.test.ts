import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEspeakSynthesizer, type EspeakSynthesizer } from '../server/engines/espeak-ng.js';
import type { PcmAudio, SynthesizedAudio } from '../server/engines/types.js';
import { Reason, VoiceError } from '../server/errors.js';

const SHORT = 'The quick brown fox jumps over the lazy dog.';
const LONG = [
  SHORT,
  'Pack my box with five dozen liquor jugs.',
  'How vexingly quick daft zebras jump.',
  'Sphinx of black quartz, judge my vow.',
].join(' ');
const DEBIAN_ESPEAK = '/usr/bin/espeak-ng';
const SILENCE = 0.01;

const live = (): AbortSignal => new AbortController().signal;

function rms(audio: PcmAudio): number {
  let sum = 0;
  for (const x of audio.samples) sum += x * x;
  return Math.sqrt(sum / Math.max(1, audio.samples.length));
}

const seconds = (audio: PcmAudio): number => audio.samples.length / audio.sampleRate;

/**
 * eSpeak's pitch flutter runs on across calls, so one text never gives exactly the same samples
 * twice: the same speech has the same words and phonemes, and lengths within 20 ms.
 */
function assertSameSpeech(actual: SynthesizedAudio, expected: SynthesizedAudio, what: string): void {
  const difference = Math.abs(actual.samples.length - expected.samples.length) / actual.sampleRate;
  assert.ok(difference < 0.02, `${what}: ${actual.samples.length} vs ${expected.samples.length} samples`);
  const symbols = (audio: SynthesizedAudio) => audio.timing?.phonemes.map((p) => p.ipa).join(' ');
  assert.equal(symbols(actual), symbols(expected), `${what}: phonemes`);
  assert.deepEqual(
    actual.timing?.words.map((w) => [w.start, w.end]),
    expected.timing?.words.map((w) => [w.start, w.end]),
    `${what}: words`,
  );
}

/** Samples the Debian binary writes for the same text, passed after `--`. */
function debianSampleCount(dir: string, voice: string, text: string): number {
  const file = join(dir, 'reference.wav');
  execFileSync(DEBIAN_ESPEAK, ['-b', '1', '-v', voice, '-w', file, '--', text]);
  return (readFileSync(file).length - 44) / 2;
}

describe('eSpeak NG synthesizer (library build)', () => {
  let espeak: EspeakSynthesizer;
  let dir: string;
  const say = (text: string, voice = 'espeak:en-us', speed = 1) =>
    espeak.synthesize(text, { voice, speed, signal: live() });

  before(async () => {
    espeak = createEspeakSynthesizer();
    await espeak.load();
    dir = mkdtempSync(join(tmpdir(), 'espeak-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('lists the voices the build ships, sorted, with BCP-47 languages', () => {
    const voices = espeak.voices();
    const ids = voices.map((v) => v.id);
    assert.ok(voices.length > 100, `only ${voices.length} voices`);
    assert.deepEqual(ids, [...ids].sort());
    assert.equal(new Set(ids).size, ids.length);
    for (const id of [
      'en-us',
      'en-gb',
      'de',
      'fr-fr',
      'es',
      'it',
      'pt',
      'nl',
      'ru',
      'cmn',
      'ja',
      'hi',
      'ar',
    ]) {
      assert.ok(ids.includes(`espeak:${id}`), `espeak:${id} missing`);
    }
    const byId = new Map(voices.map((v) => [v.id, v]));
    assert.deepEqual(byId.get('espeak:en-us'), {
      id: 'espeak:en-us',
      name: 'English (America)',
      language: 'en-US',
      engine: 'espeak-ng',
      model: '',
      speaker: '',
      sampleRate: 22050,
    });
    assert.equal(byId.get('espeak:cmn')?.language, 'zh');
    assert.equal(byId.get('espeak:de')?.language, 'de');
    assert.equal(byId.get('espeak:ru-cl')?.language, 'ru');
  });

  it('speaks non-silent 22050 Hz audio in [-1, 1]', async () => {
    const audio = await say(SHORT);
    assert.equal(audio.sampleRate, 22050);
    assert.ok(seconds(audio) > 1.5 && seconds(audio) < 5, `${seconds(audio)} s`);
    assert.ok(rms(audio) > 0.02, `rms ${rms(audio)}`);
    assert.ok(audio.samples.every((x) => x >= -1 && x <= 1));
  });

  it('speaks other languages', async () => {
    for (const [voice, text] of [
      ['espeak:de', 'Guten Tag, wie geht es Ihnen?'],
      ['espeak:cmn', '这是一个中文句子。'],
      ['espeak:ru', 'Это короткое предложение.'],
    ] as const) {
      const audio = await say(text, voice);
      assert.ok(
        seconds(audio) > 0.8 && rms(audio) > 0.02,
        `${voice}: ${seconds(audio)} s, rms ${rms(audio)}`,
      );
    }
  });

  it('uses the default voice for an empty voice id', async () => {
    assertSameSpeech(await say(SHORT, ''), await say(SHORT, 'espeak:en-us'), 'empty id');
    assert.notEqual((await say(SHORT, 'espeak:de')).samples.length, (await say(SHORT, '')).samples.length);
  });

  it('makes audio roughly proportional to the text length', async () => {
    const ratio = seconds(await say(LONG)) / seconds(await say(SHORT));
    assert.ok(ratio > 2.5 && ratio < 6, `4x text gave ${ratio.toFixed(2)}x audio`);
  });

  it('halves the duration at speed 2.0 and doubles it at speed 0.5', async () => {
    const natural = seconds(await say(LONG));
    const fast = seconds(await say(LONG, 'espeak:en-us', 2)) / natural;
    const slow = seconds(await say(LONG, 'espeak:en-us', 0.5)) / natural;
    assert.ok(fast > 0.4 && fast < 0.65, `speed 2.0 → ${fast.toFixed(3)}x duration`);
    assert.ok(slow > 1.6 && slow < 2.5, `speed 0.5 → ${slow.toFixed(3)}x duration`);
  });

  it("keeps eSpeak's sentence-final pause and its short lead-in", async () => {
    const { samples, sampleRate } = await say(SHORT);
    const first = samples.findIndex((x) => Math.abs(x) > SILENCE);
    let last = samples.length - 1;
    while (last > 0 && Math.abs(samples[last] ?? 0) <= SILENCE) last--;
    const leadMs = (1000 * first) / sampleRate;
    const trailMs = (1000 * (samples.length - 1 - last)) / sampleRate;
    assert.ok(leadMs < 50, `lead ${leadMs} ms`);
    assert.ok(trailMs > 200 && trailMs < 400, `trail ${trailMs} ms`);
  });

  it('speaks text that looks like options, quotes, newlines and markup as text', async () => {
    const hello = await say('hello');
    // Parsed as options these would switch voice, print help, or write elsewhere and return no audio.
    const dashed = await say('-v de hello');
    assert.ok(dashed.samples.length > hello.samples.length * 1.2);
    for (const text of ['--help', '-w /tmp/x.wav', '--ssml']) assert.ok(rms(await say(text)) > 0.02, text);
    const markup = await say('<speak>hello</speak>');
    assert.ok(markup.samples.length > hello.samples.length * 2, 'SSML must be off: tags are read out');
    const quoted = seconds(await say('He said "stop".\nThen he left.'));
    const plain = seconds(await say('He said stop. Then he left.'));
    assert.ok(Math.abs(quoted / plain - 1) < 0.15, `${quoted} s vs ${plain} s`);
  });

  it('lasts as long as the Debian espeak-ng binary given the same text after --', async (t) => {
    if (!existsSync(DEBIAN_ESPEAK)) return t.skip('no /usr/bin/espeak-ng');
    // The library build is a newer eSpeak NG than Debian's 1.51: durations agree, samples do not.
    for (const text of ['-v de hello', '--help', SHORT, 'One, two.']) {
      const ours = (await say(text)).samples.length;
      const debian = debianSampleCount(dir, 'en-us', text);
      assert.ok(Math.abs(ours / debian - 1) < 0.08, `${text}: ${ours} vs Debian ${debian} samples`);
    }
  });

  it('rejects an unknown voice, listing valid ids', async () => {
    await assert.rejects(say(SHORT, 'espeak:en'), (error: unknown) => {
      assert.ok(error instanceof VoiceError);
      assert.equal(error.reason, Reason.UnknownResource);
      assert.match(error.rawMessage, /^voice: unknown voice "espeak:en"/);
      assert.match(error.rawMessage, /espeak:en-gb, .*espeak:en-us/);
      assert.match(error.rawMessage, /in all/);
      return true;
    });
    await assert.rejects(say(SHORT, 'vits:something'), /espeak:en-us/);
  });

  it('rejects a speed outside 0.5 to 2.0', async () => {
    for (const speed of [0.49, 2.01, Number.NaN]) {
      await assert.rejects(say(SHORT, 'espeak:en-us', speed), { reason: Reason.InvalidArgument });
    }
  });

  it('rejects an unknown default voice at load', async () => {
    await assert.rejects(createEspeakSynthesizer({ defaultVoice: 'espeak:xx' }).load(), {
      reason: Reason.UnknownResource,
    });
  });

  it('rejects with the signal reason when aborted before or while queued', async () => {
    const reason = new VoiceError(Reason.DeadlineExceeded, 'deadline');
    await assert.rejects(
      espeak.synthesize(SHORT, { voice: 'espeak:en-us', speed: 1, signal: AbortSignal.abort(reason) }),
      (error) => error === reason,
    );
    const controller = new AbortController();
    const pending = espeak.synthesize(SHORT, { voice: 'espeak:en-us', speed: 1, signal: controller.signal });
    controller.abort(reason);
    await assert.rejects(pending, (error) => error === reason);
  });

  it('reuses one instance for 20 calls without growing memory or changing output', async () => {
    const reference = await say(LONG);
    const before = process.memoryUsage();
    for (let i = 0; i < 20; i++) {
      const audio = await say(LONG);
      assertSameSpeech(audio, reference, `call ${i}`);
    }
    const grown = process.memoryUsage();
    assert.ok(grown.rss - before.rss < 150e6, `rss grew ${(grown.rss - before.rss) / 1e6} MB`);
    assert.ok(
      grown.heapUsed - before.heapUsed < 50e6,
      `heap grew ${(grown.heapUsed - before.heapUsed) / 1e6} MB`,
    );
  });

  it('gives concurrent calls the same audio as sequential ones', async () => {
    const jobs = [
      [SHORT, 'espeak:en-us', 1],
      [LONG, 'espeak:en-gb', 1.5],
      ['Guten Tag, wie geht es Ihnen?', 'espeak:de', 1],
      ['Bonjour tout le monde.', 'espeak:fr-fr', 0.75],
      ['-v de hello', 'espeak:en-us', 2],
    ] as const;
    const sequential: PcmAudio[] = [];
    for (const [text, voice, speed] of jobs) sequential.push(await say(text, voice, speed));
    const concurrent = await Promise.all(jobs.map(([text, voice, speed]) => say(text, voice, speed)));
    for (const [i, audio] of concurrent.entries()) {
      const reference = sequential[i];
      assert.ok(reference);
      assertSameSpeech(audio, reference, `job ${i}`);
    }
  });
});
