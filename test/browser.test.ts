import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { AudioEncoding, createVoiceClient, type VoiceClient } from '../clients/node/index.js';
import { Access } from '../server/gen/cortex/voice/v1/access_pb.js';
import {
  AppendSessionAudioRequestSchema,
  StartTranscriptionSessionRequestSchema,
} from '../server/gen/cortex/voice/v1/transcription_pb.js';
import {
  alignment,
  chromiumMissing,
  grpcWebMessages,
  launchChromium,
  type PageServer,
  recordRequests,
  startPageServer,
  writeFakeMicrophone,
} from './helpers/browser.js';
import { testModels } from './helpers/models.js';
import { concat, RATE, silence, speak, speechBounds } from './helpers/speech.js';
import { startServerWithEngines, type TestServer } from './helpers/test-server.js';

const API_KEY = 'browser-test-key-0123456789abcdef';
const TOKEN_SECRET = 'browser-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';
const SDK_URL = '/web/voice-web.js';
const APPEND_PATH = '/cortex.voice.v1.Transcription/AppendSessionAudio';
const START_PATH = '/cortex.voice.v1.Transcription/StartTranscriptionSession';
const TOLERANCE_MS = 250;

/** The outcome of a call made in the page, as plain data. */
type CallOutcome = { ok: true; voices: number } | { ok: false; code: number; message: string };

describe('the browser SDK and the demo page, in Chromium', { skip: chromiumMissing() }, () => {
  let t: TestServer;
  let webUrl: string;
  let pages: PageServer;
  let browser: Browser;
  let node: VoiceClient;
  let token: string;
  let modelText: string;
  let clip: Float32Array;
  /** Where each utterance's speech lies in the fake microphone's file, lead included, in ms. */
  let truth: Array<{ startMs: number; endMs: number }>;
  let sentence: Float32Array;

  before(async () => {
    modelText = (await testModels()).whisper.text;
    pages = await startPageServer();
    t = await startServerWithEngines({
      service: { web_port: 0, cors_origins: [pages.origin], demo_page: true },
      // Results then carry the speech's own bounds, which the test compares with the truth.
      models: { vad: { speech_pad_ms: 0 } },
      security: { api_key_required: true, api_keys: [API_KEY], client_tokens: { secret: TOKEN_SECRET } },
    });
    assert.ok(t.webPort !== undefined, 'the web port is on');
    webUrl = `http://127.0.0.1:${t.webPort}`;
    node = createVoiceClient({ address: t.address, apiKey: API_KEY });
    token = await mintToken(t.address, 300);

    const sentences = [
      speak('The weather is lovely today.'),
      speak('Please send me the report by Friday.'),
      speak('Thank you, and see you soon.'),
    ];
    sentence = sentences[0]!;
    const gaps = [1.2, 1.5];
    clip = concat(
      sentences[0]!,
      silence(gaps[0]!),
      sentences[1]!,
      silence(gaps[1]!),
      sentences[2]!,
      silence(2),
    );
    const mic = writeFakeMicrophone(clip);
    let offset = 0;
    truth = sentences.map((spoken, index) => {
      const bounds = speechBounds(spoken);
      const at = mic.leadMs + (offset / RATE) * 1000;
      offset += spoken.length + (gaps[index] ?? 0) * RATE;
      return { startMs: at + bounds.startMs, endMs: at + bounds.endMs };
    });
    clip = concat(silence(mic.leadMs / 1000), clip);
    browser = await launchChromium({ fakeMicrophone: mic.path });
  });

  after(async () => {
    await browser?.close();
    node?.close();
    await t?.stop();
    await pages?.close();
  });

  it('the demo page shows the health, the voices, and exactly one final per utterance of the microphone at the times it was spoken', async () => {
    const context = await browser.newContext();
    const appends = recordRequests(context, APPEND_PATH);
    const page = await context.newPage();
    const problems = watchPage(page);
    try {
      await page.goto(`${webUrl}/#token=${token}`);
      for (const service of ['', 'cortex.voice.v1.Transcription', 'cortex.voice.v1.Synthesis']) {
        await page.waitForSelector(`.status[data-service="${service}"][data-status="serving"]`, {
          timeout: 10_000,
        });
      }
      await page.waitForFunction(() => document.querySelectorAll('#voice option').length > 1, undefined, {
        timeout: 10_000,
      });
      // Voice processing off: the capture then follows the file closely enough to time it.
      for (const box of ['#echo-cancellation', '#noise-suppression', '#auto-gain']) await page.uncheck(box);
      await page.click('#mic');
      await page.waitForSelector('#mic[aria-pressed="true"]');
      await page.waitForFunction(() => document.querySelectorAll('.caption.final').length >= 3, undefined, {
        timeout: 30_000,
      });
      // Nothing more comes from the silence after the last utterance, nor from the flush.
      await page.waitForTimeout(1000);
      await page.click('#mic');
      await page.waitForSelector('#mic[aria-pressed="false"]', { timeout: 15_000 });

      const shown = await page.evaluate(() => ({
        startedAt: Number(document.querySelector<HTMLElement>('#captions')!.dataset.startedAt),
        finals: Array.from(document.querySelectorAll<HTMLElement>('.caption.final')).map((row) => ({
          text: row.querySelector('.text')!.textContent ?? '',
          startMs: Number(row.dataset.startMs),
          endMs: Number(row.dataset.endMs),
          shownAt: Number(row.dataset.shownAt),
        })),
        interims: document.querySelectorAll('.caption.interim').length,
      }));
      assert.equal(shown.finals.length, 3, `finals on the page: ${JSON.stringify(shown.finals)}`);
      assert.equal(shown.interims, 0);
      for (const final of shown.finals) assert.equal(final.text, modelText);

      // The stream the server received, from the page's append calls: numbered without gaps from
      // 1, ~100 ms each, the last one ending the audio.
      const requests = appends.bodies
        .flatMap((body) => grpcWebMessages(body))
        .map((message) => fromBinary(AppendSessionAudioRequestSchema, message));
      const bySequence = new Map(requests.map((request) => [Number(request.sequenceNumber), request]));
      const sequence = [...bySequence.keys()].sort((a, b) => a - b);
      assert.deepEqual(
        sequence,
        sequence.map((_, index) => index + 1),
        'sequence numbers from 1 without gaps',
      );
      assert.equal(bySequence.get(sequence.at(-1)!)!.endOfAudio, true);
      const sizes = sequence.slice(0, -1).map((number) => bySequence.get(number)!.audio.length);
      assert.ok(
        sizes.filter((size) => size === 3200).length >= sizes.length * 0.8,
        `chunk sizes ${sizes.join(' ')}`,
      );
      const received = linear16(concatBytes(sequence.map((number) => bySequence.get(number)!.audio)));

      // How much of the file was played before the capture began.
      const first = Math.round((truth[0]!.startMs / 1000) * RATE);
      const { lag, correlation } = alignment(received, clip, {
        at: Math.max(0, first - RATE / 2),
        window: RATE,
        maxLag: Math.round(0.8 * RATE),
      });
      assert.ok(correlation > 0.9, `the capture correlates ${correlation.toFixed(3)} with the file`);
      const lagMs = (lag / RATE) * 1000;

      const latencies: number[] = [];
      shown.finals.forEach((final, index) => {
        const expected = { startMs: truth[index]!.startMs - lagMs, endMs: truth[index]!.endMs - lagMs };
        assert.ok(
          Math.abs(final.startMs - expected.startMs) <= TOLERANCE_MS,
          `utterance ${index} starts at ${final.startMs} ms, spoken at ${expected.startMs.toFixed(0)} ms`,
        );
        assert.ok(
          Math.abs(final.endMs - expected.endMs) <= TOLERANCE_MS,
          `utterance ${index} ends at ${final.endMs} ms, spoken until ${expected.endMs.toFixed(0)} ms`,
        );
        latencies.push(final.shownAt - (shown.startedAt + expected.endMs));
      });
      console.log(
        `browser: end of utterance to its final on screen: ${latencies.map((ms) => `${ms.toFixed(0)} ms`).join(', ')} ` +
          `(capture began ${lagMs.toFixed(0)} ms into the file, correlation ${correlation.toFixed(3)})`,
      );
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  it('the demo page marks each word and shows the mouth shape while it speaks, and says what was heard when stopped', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems = watchPage(page);
    try {
      await page.goto(`${webUrl}/#token=${token}`);
      await page.waitForFunction(() => document.querySelectorAll('#voice option').length > 1, undefined, {
        timeout: 10_000,
      });
      const shapes = new Set<string>();
      await page.exposeFunction('recordShape', (shape: string) => shapes.add(shape));
      await page.evaluate(() => {
        const mouth = document.querySelector('#mouth') as HTMLElement;
        new MutationObserver(() =>
          (window as unknown as { recordShape(s: string): void }).recordShape(mouth.textContent ?? ''),
        ).observe(mouth, {
          childList: true,
          characterData: true,
          subtree: true,
        });
      });
      await page.click('#speak');
      await page.waitForFunction(
        () => document.querySelector('#spoken mark')?.textContent === 'Hello',
        undefined,
        {
          timeout: 10_000,
        },
      );
      await page.waitForFunction(
        () => /^Spoke /.test(document.querySelector('#speak-state')?.textContent ?? ''),
        undefined,
        {
          timeout: 30_000,
        },
      );
      assert.ok(shapes.size >= 5, `mouth shapes shown: ${[...shapes].join(' ')}`);
      await page.click('#speak');
      await page.waitForFunction(
        () => document.querySelector('#spoken mark')?.textContent === 'voice',
        undefined,
        {
          timeout: 10_000,
        },
      );
      await page.click('#stop-speaking');
      const state = await page.waitForFunction(
        () => {
          const text = document.querySelector('#speak-state')?.textContent ?? '';
          return text.startsWith('Stopped') ? text : false;
        },
        undefined,
        { timeout: 10_000 },
      );
      assert.match(String(await state.jsonValue()), /^Stopped; heard: “Hello! I am the Cortex voice( |”)/);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  it('speak plays every synthesized chunk back to back on the audio clock and reports their spans in order', async () => {
    const text = 'Hello there. How are you today? This is the third sentence, and it is a little longer.';
    const { page, context } = await openPage(pages.origin);
    try {
      const played = await page.evaluate(
        async ({ sdkUrl, baseUrl, token, text }) => {
          const sdk = await import(sdkUrl);
          const client = sdk.createVoiceWebClient({ baseUrl, token });
          const audio = new AudioContext();
          const chunks: Array<Record<string, unknown>> = [];
          const began = audio.currentTime;
          const result = await client.speak(text, {
            audioContext: audio,
            onChunk: (chunk: Record<string, unknown>) =>
              chunks.push({ ...chunk, heardAt: audio.currentTime }),
          });
          return { result, chunks, rate: audio.sampleRate, elapsed: audio.currentTime - began };
        },
        { sdkUrl: SDK_URL, baseUrl: webUrl, token, text },
      );
      const chunks = played.chunks as unknown as Array<{
        sequenceNumber: number;
        textSpan: { start: number; end: number };
        startTime: number;
        duration: number;
        sampleCount: number;
        sampleRate: number;
        heardAt: number;
      }>;

      // The same synthesis from Node: what the page should have played.
      const expected: Array<{ sampleCount: number; start: number; end: number }> = [];
      for await (const chunk of node.synthesis.synthesizeText({
        text,
        config: { encoding: AudioEncoding.LINEAR16, sampleRateHz: played.rate },
      })) {
        expected.push({
          sampleCount: chunk.sampleCount,
          start: chunk.textSpan!.start,
          end: chunk.textSpan!.end,
        });
      }
      assert.ok(expected.length >= 3, 'one chunk per sentence at least');
      assert.equal(chunks.length, expected.length);
      assert.deepEqual(
        chunks.map((chunk) => chunk.sequenceNumber),
        expected.map((_, index) => index),
        'callbacks in order',
      );
      assert.deepEqual(
        chunks.map((chunk) => [chunk.textSpan.start, chunk.textSpan.end]),
        expected.map((chunk) => [chunk.start, chunk.end]),
      );
      const total = expected.reduce((sum, chunk) => sum + chunk.sampleCount, 0);
      assert.equal(
        chunks.reduce((sum, chunk) => sum + chunk.sampleCount, 0),
        total,
      );
      assert.ok(chunks.every((chunk) => chunk.sampleRate === played.rate));
      assert.ok(Math.abs(played.result.duration - total / played.rate) < 1e-6);
      for (let index = 1; index < chunks.length; index += 1) {
        const previous = chunks[index - 1]!;
        assert.ok(
          Math.abs(chunks[index]!.startTime - (previous.startTime + previous.duration)) < 1e-6,
          `chunk ${index} starts where chunk ${index - 1} ends`,
        );
      }
      assert.equal(played.result.underruns, 0);
      // Each caption callback came when its chunk began to play, and speak() returned once the
      // last one had played.
      for (const chunk of chunks)
        assert.ok(Math.abs(chunk.heardAt - chunk.startTime) < 0.1, JSON.stringify(chunk));
      const last = chunks.at(-1)!;
      assert.ok(
        played.elapsed >= last.startTime + last.duration - chunks[0]!.startTime,
        'returned after playback',
      );
    } finally {
      await context.close();
    }
  });

  it('speak stops mid-sentence when cancelled: the audio goes silent at once and it rejects with CANCELLED', async () => {
    const { page, context } = await openPage(pages.origin);
    try {
      const outcome = await page.evaluate(
        async ({ sdkUrl, baseUrl, token }) => {
          const sdk = await import(sdkUrl);
          const client = sdk.createVoiceWebClient({ baseUrl, token });
          const audio = new AudioContext();
          const output = new AnalyserNode(audio, { fftSize: 2048 });
          output.connect(audio.destination);
          const loudness = () => {
            const samples = new Float32Array(output.fftSize);
            output.getFloatTimeDomainData(samples);
            return Math.max(...samples.map(Math.abs));
          };
          const controller = new AbortController();
          let started = 0;
          let callbacks = 0;
          let loudWhilePlaying = 0;
          try {
            await client.speak(
              'This sentence is long enough to be interrupted well before its end, surely.',
              {
                audioContext: audio,
                destination: output,
                signal: controller.signal,
                onChunk: () => {
                  callbacks += 1;
                  if (callbacks > 1) return;
                  started = audio.currentTime;
                  setTimeout(() => {
                    loudWhilePlaying = loudness();
                    controller.abort();
                  }, 400);
                },
              },
            );
            return {
              code: 0,
              played: audio.currentTime - started,
              callbacks,
              loudWhilePlaying,
              loudAfter: -1,
            };
          } catch (error) {
            const played = audio.currentTime - started;
            const code = sdk.ConnectError.from(error).code;
            await new Promise((resolve) => setTimeout(resolve, 300));
            return { code, played, callbacks, loudWhilePlaying, loudAfter: loudness() };
          }
        },
        { sdkUrl: SDK_URL, baseUrl: webUrl, token },
      );
      assert.equal(outcome.code, Code.Canceled);
      assert.ok(
        outcome.played < 0.8,
        `stopped after ${outcome.played.toFixed(3)} s of a sentence of seconds`,
      );
      assert.equal(outcome.callbacks, 1, 'no chunk started after the cancel');
      assert.ok(
        outcome.loudWhilePlaying > 0.01,
        `speech was heard before the cancel (${outcome.loudWhilePlaying})`,
      );
      assert.equal(outcome.loudAfter, 0, 'silence after the cancel');
    } finally {
      await context.close();
    }
  });

  it('speak drives words and visemes on the audio clock, and a barge-in resolves with the words heard', async () => {
    const text =
      'Good morning, your table for four is ready. Please follow me to the window, and enjoy your meal.';
    const { page, context } = await openPage(pages.origin);
    try {
      const run = await page.evaluate(
        async ({ sdkUrl, baseUrl, token, text }) => {
          const sdk = await import(sdkUrl);
          const client = sdk.createVoiceWebClient({ baseUrl, token });
          const audio = new AudioContext();
          const words: Array<Record<string, unknown>> = [];
          const visemes: Array<Record<string, unknown>> = [];
          const stop = new AbortController();
          const result = await client.speak(text, {
            audioContext: audio,
            stopSignal: stop.signal,
            onWord: (word: Record<string, unknown>) => {
              words.push({ ...word, firedAt: audio.currentTime });
              // The listener interrupts during the sixth word.
              if (words.length === 6) setTimeout(() => stop.abort(), 60);
            },
            onViseme: (viseme: Record<string, unknown>) =>
              visemes.push({ ...viseme, firedAt: audio.currentTime }),
          });
          await new Promise((resolve) => setTimeout(resolve, 300));
          return { result, words, visemes, wordsAfterWait: words.length };
        },
        { sdkUrl: SDK_URL, baseUrl: webUrl, token, text },
      );
      type Timed = { startTime: number; endTime: number; firedAt: number };
      const words = run.words as unknown as Array<
        Timed & { text: string; textSpan: { start: number; end: number } }
      >;
      const visemes = run.visemes as unknown as Array<Timed & { visemeId: number; oculusViseme: string }>;
      assert.deepEqual(
        words.map((w) => w.text),
        ['Good', 'morning', 'your', 'table', 'for', 'four'].slice(0, words.length),
      );
      assert.ok(words.length >= 6, `${words.length} words before the stop`);
      for (const [i, w] of words.entries()) {
        assert.ok(Math.abs(w.firedAt - w.startTime) < 0.1, `word ${i} fired at its time`);
        assert.ok(w.endTime > w.startTime);
        assert.ok(i === 0 || w.startTime >= (words[i - 1]?.endTime ?? 0) - 1e-6, 'words in order');
      }
      assert.ok(visemes.length > words.length, 'several visemes per word');
      for (const [i, v] of visemes.entries()) {
        assert.ok(v.visemeId >= 0 && v.visemeId <= 21 && v.oculusViseme.length > 0);
        if (i > 0) assert.ok(Math.abs(v.startTime - (visemes[i - 1]?.endTime ?? 0)) < 1e-6, 'back to back');
      }
      const result = run.result as unknown as {
        interrupted: boolean;
        heard: { text: string; end: number; words: Array<{ text: string }>; lastWordComplete: boolean };
      };
      assert.equal(result.interrupted, true);
      assert.equal(run.wordsAfterWait, words.length, 'no word fired after the stop');
      // Heard: the words that began to play, which are the words announced.
      assert.deepEqual(
        result.heard.words.map((w) => w.text),
        words.map((w) => w.text),
      );
      assert.equal(result.heard.end, words.at(-1)?.textSpan.end);
      assert.equal(result.heard.text, [...text].slice(0, result.heard.end).join(''));
    } finally {
      await context.close();
    }
  });

  it('a failed append is retried with its sequence number and the same audio; an AbortSignal ends the session', async () => {
    const { page, context } = await openPage(pages.origin);
    const appends = recordRequests(context, APPEND_PATH);
    let seen = 0;
    await context.route(`**${APPEND_PATH}`, async (route) => {
      seen += 1;
      if (seen === 3) await route.abort('failed');
      else await route.continue();
    });
    try {
      const audio = Array.from(concat(silence(0.3), sentence, silence(1.2)));
      const run = await page.evaluate(
        async ({ sdkUrl, baseUrl, token, audio, rate }) => {
          const sdk = await import(sdkUrl);
          const client = sdk.createVoiceWebClient({ baseUrl, token });
          const microphone = (window as unknown as ClipMicrophoneWindow).clipMicrophone(audio, rate);
          const transcription = client.transcribeMicrophone(microphone.stream, {
            config: { language: 'en' },
          });
          microphone.play();
          const finals: string[] = [];
          let stopped: Promise<void> | undefined;
          for await (const response of transcription) {
            if (response.event.case === 'result' && response.event.value.isFinal) {
              finals.push(response.event.value.text);
              stopped = transcription.stop();
            }
          }
          await stopped;

          // Cancelled half-way through the clip.
          const controller = new AbortController();
          const cancelled = client.transcribeMicrophone(microphone.stream, {
            config: { language: 'en' },
            signal: controller.signal,
          });
          microphone.play();
          const sessionId = await cancelled.sessionId;
          setTimeout(() => controller.abort(), 800);
          let code = 0;
          try {
            for await (const _ of cancelled) {
              // events until the cancel
            }
          } catch (error) {
            code = sdk.ConnectError.from(error).code;
          }
          return { finals, sessionId, code };
        },
        { sdkUrl: SDK_URL, baseUrl: webUrl, token, audio, rate: RATE },
      );
      assert.deepEqual(run.finals, [modelText]);
      assert.equal(run.code, Code.Canceled);

      const requests = appends.bodies
        .flatMap((body) => grpcWebMessages(body))
        .map((message) => fromBinary(AppendSessionAudioRequestSchema, message));
      const first = requests.filter((request) => request.sessionId === requests[0]!.sessionId);
      const numbers = first.map((request) => request.sequenceNumber);
      assert.deepEqual(
        numbers.slice(0, 4),
        [1, 2, 3, 3],
        'the failed third append is sent again as number 3',
      );
      assert.deepEqual(first[3]!.audio, first[2]!.audio, 'with the same audio');
      assert.deepEqual(
        [...new Set(numbers)],
        numbers.filter((_, index) => index !== 3),
        'and every number once otherwise, in order',
      );
      assert.equal(first.at(-1)!.endOfAudio, true);

      // The cancelled session is gone: its owner's appends find nothing.
      let code: Code | undefined;
      for (let attempt = 0; attempt < 20 && code !== Code.NotFound; attempt += 1) {
        code = await node.transcription
          .appendSessionAudio({ sessionId: run.sessionId, sequenceNumber: 1000, audio: new Uint8Array(0) })
          .then(
            () => undefined,
            (error: unknown) => ConnectError.from(error).code,
          );
        if (code !== Code.NotFound) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(code, Code.NotFound);
    } finally {
      await context.close();
    }
  });

  it('a live session with resume reopens a lost session from the last commit point: each utterance once', async () => {
    const { page, context } = await openPage(pages.origin);
    const opens = recordRequests(context, START_PATH);
    try {
      const audio = Array.from(concat(silence(0.3), sentence, silence(1.2), sentence, silence(1.2)));
      const run = await page.evaluate(
        async ({ sdkUrl, baseUrl, token, audio, rate }) => {
          const sdk = await import(sdkUrl);
          // The first session's stream breaks on cue, as a dropped connection would break it.
          let cut!: () => void;
          const cutting = new Promise<'cut'>((resolve) => {
            cut = () => resolve('cut');
          });
          let first = true;
          const fetchWithCut: typeof fetch = async (input, init) => {
            const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
            if (!first || !url.endsWith('/StartTranscriptionSession')) return fetch(input, init);
            first = false;
            const controller = new AbortController();
            init?.signal?.addEventListener('abort', () => controller.abort());
            const response = await fetch(input, { ...init, signal: controller.signal });
            const reader = response.body!.getReader();
            const body = new ReadableStream<Uint8Array>({
              async pull(stream) {
                const next = await Promise.race([reader.read(), cutting]);
                if (next === 'cut') {
                  controller.abort();
                  stream.error(new TypeError('network error'));
                } else if (next.done) stream.close();
                else stream.enqueue(next.value);
              },
            });
            return new Response(body, { status: response.status, headers: response.headers });
          };
          const client = sdk.createVoiceWebClient({ baseUrl, token, fetch: fetchWithCut });
          const microphone = (window as unknown as ClipMicrophoneWindow).clipMicrophone(audio, rate);
          const transcription = client.transcribeMicrophone(microphone.stream, {
            config: { language: 'en' },
            resume: true,
          });
          microphone.play().onended = () => void transcription.stop();
          const events: string[] = [];
          for await (const response of transcription) {
            const event = response.event;
            if (event.case === 'speechStarted') {
              events.push(`started ${event.value.utteranceIndex}`);
              // Mid-utterance 1, after final 0 and its commit point.
              if (event.value.utteranceIndex === 1) cut();
            } else if (event.case === 'speechEnded') events.push(`ended ${event.value.utteranceIndex}`);
            else if (event.case === 'result' && event.value.isFinal)
              events.push(`final ${event.value.utteranceIndex} ${event.value.text}`);
          }
          await transcription.done;
          return events;
        },
        { sdkUrl: SDK_URL, baseUrl: webUrl, token, audio, rate: RATE },
      );
      const sorted = [...run].sort();
      assert.deepEqual(
        sorted,
        ['ended 0', 'ended 1', `final 0 ${modelText}`, `final 1 ${modelText}`, 'started 0', 'started 1'],
        run.join('\n'),
      );
      const requests = opens.bodies
        .flatMap((body) => grpcWebMessages(body))
        .map((message) => fromBinary(StartTranscriptionSessionRequestSchema, message));
      assert.equal(requests.length, 2, 'a second session was opened');
      const resume = requests[1]!.config?.resume;
      assert.equal(resume?.nextUtteranceIndex, 1, 'from the point after final 0');
      assert.ok(Number(resume?.offsetMs) > 0);
    } finally {
      await context.close();
    }
  });

  it('transcribeMicrophone with codec opus streams MediaRecorder WebM Opus and gets each utterance once', async () => {
    const { page, context } = await openPage(pages.origin);
    const opens = recordRequests(context, START_PATH);
    const appends = recordRequests(context, APPEND_PATH);
    try {
      const audio = Array.from(concat(silence(0.3), sentence, silence(1.2), sentence, silence(1.2)));
      const run = await page.evaluate(
        async ({ sdkUrl, baseUrl, token, audio, rate }) => {
          const sdk = await import(sdkUrl);
          const client = sdk.createVoiceWebClient({ baseUrl, token });
          const microphone = (window as unknown as ClipMicrophoneWindow).clipMicrophone(audio, rate);
          let refusal = '';
          try {
            client.transcribeMicrophone(microphone.stream, { codec: 'opus', resume: true });
          } catch (error) {
            refusal = String(error);
          }
          const transcription = client.transcribeMicrophone(microphone.stream, {
            config: { language: 'en' },
            codec: 'opus',
          });
          microphone.play().onended = () => void transcription.stop();
          const events: string[] = [];
          for await (const response of transcription) {
            const event = response.event;
            if (event.case === 'result' && event.value.isFinal)
              events.push(`final ${event.value.utteranceIndex} ${event.value.text}`);
          }
          await transcription.done;
          return { events, refusal, format: sdk.opusRecordingFormat() };
        },
        { sdkUrl: SDK_URL, baseUrl: webUrl, token, audio, rate: RATE },
      );
      assert.match(run.refusal, /codec: "opus" cannot be resumed/);
      assert.deepEqual(run.events, [`final 0 ${modelText}`, `final 1 ${modelText}`]);
      const start = opens.bodies
        .flatMap((body) => grpcWebMessages(body))
        .map((message) => fromBinary(StartTranscriptionSessionRequestSchema, message));
      assert.equal(start[0]?.config?.audioFormat?.encoding, AudioEncoding.WEBM_OPUS);
      assert.equal(run.format?.encoding, AudioEncoding.WEBM_OPUS);
      const sent = appends.bodies
        .flatMap((body) => grpcWebMessages(body))
        .map((message) => fromBinary(AppendSessionAudioRequestSchema, message))
        .sort((a, b) => Number(a.sequenceNumber - b.sequenceNumber));
      const bytes = concatBytes(sent.map((request) => request.audio));
      assert.equal(Buffer.from(bytes.subarray(0, 4)).toString('hex'), '1a45dfa3', 'a WebM stream');
      // Opus at ~32 kbit/s: far less than the 256 kbit/s of 16 kHz LINEAR16 for the same 6 s.
      const seconds = audio.length / RATE;
      assert.ok(
        bytes.length < (seconds * 256_000) / 8 / 3,
        `${bytes.length} bytes for ${seconds.toFixed(1)} s`,
      );
    } finally {
      await context.close();
    }
  });

  it('the worklet resamples a 48 kHz capture to 16 kHz LINEAR16 chunks of 100 ms, and loads from its own file', async () => {
    const { page, context } = await openPage(pages.origin);
    try {
      const capture = await page.evaluate(async (sdkUrl) => {
        const sdk = await import(sdkUrl);
        const audio = new AudioContext({ sampleRate: 48_000 });
        const tone = new OscillatorNode(audio, { frequency: 440 });
        const destination = audio.createMediaStreamDestination();
        tone.connect(destination);
        tone.start();
        const capture = await sdk.startCapture(destination.stream, {
          audioContext: audio,
          workletUrl: '/web/mic-worklet.js',
        });
        const chunks: Uint8Array[] = [];
        const reading = (async () => {
          for await (const chunk of capture.chunks) chunks.push(chunk);
        })();
        await new Promise((resolve) => setTimeout(resolve, 1500));
        await capture.flush();
        await reading;
        await capture.close();
        const samples = chunks.flatMap((chunk) => [
          ...new Int16Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 2),
        ]);
        // Zero crossings over the middle second: twice the tone's frequency.
        const middle = samples.slice(4000, 20_000);
        let crossings = 0;
        for (let index = 1; index < middle.length; index += 1) {
          if (middle[index - 1]! < 0 !== middle[index]! < 0) crossings += 1;
        }
        const peak = middle.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
        return { sizes: chunks.map((chunk) => chunk.length), crossings, peak, total: samples.length };
      }, SDK_URL);
      assert.ok(
        capture.sizes.slice(0, -1).every((size) => size === 3200),
        `chunk sizes ${capture.sizes.join(' ')}`,
      );
      assert.ok(
        capture.total >= 1.3 * RATE && capture.total <= 1.7 * RATE,
        `${capture.total} samples in 1.5 s`,
      );
      assert.ok(
        Math.abs(capture.crossings - 880) <= 10,
        `${capture.crossings} zero crossings in 1 s of 440 Hz`,
      );
      assert.ok(capture.peak > 0.8 * 32767, `peak ${capture.peak}`);
    } finally {
      await context.close();
    }
  });

  it('a page calls with a minted token; an expired, a forged or no token is refused; an unlisted origin is answered nothing', async () => {
    const expired = resign(token, TOKEN_SECRET, (claims) => ({
      ...claims,
      iat: Math.floor(Date.now() / 1000) - 600,
      exp: Math.floor(Date.now() / 1000) - 300,
    }));
    const forged = resign(token, 'not-the-server-secret-0123456789-abcdefghijklmnopqrst', (claims) => claims);

    const listed = await openPage(pages.origin);
    const unlisted = await openPage(`http://localhost:${pages.port}`);
    try {
      const call = (page: Page, withToken: string | undefined) =>
        page.evaluate(
          async ({ sdkUrl, baseUrl, token }): Promise<CallOutcome> => {
            const sdk = await import(sdkUrl);
            const client = sdk.createVoiceWebClient(token === undefined ? { baseUrl } : { baseUrl, token });
            try {
              const { voices } = await client.synthesis.listVoices({});
              return { ok: true, voices: voices.length };
            } catch (error) {
              const connectError = sdk.ConnectError.from(error);
              return { ok: false, code: connectError.code, message: connectError.rawMessage };
            }
          },
          { sdkUrl: SDK_URL, baseUrl: webUrl, token: withToken },
        );

      const minted = await call(listed.page, token);
      assert.ok(minted.ok && minted.voices > 0, JSON.stringify(minted));
      for (const [name, candidate, pattern] of [
        ['expired', expired, /expired/i],
        ['forged', forged, /signature|invalid|forged/i],
        ['no', undefined, /token|key|credential/i],
      ] as const) {
        const outcome = await call(listed.page, candidate);
        assert.ok(
          !outcome.ok && outcome.code === Code.Unauthenticated,
          `${name} token: ${JSON.stringify(outcome)}`,
        );
        assert.match(outcome.message, pattern, `${name} token`);
      }

      // Another origin, not in service.cors_origins: the browser gets no CORS headers and shows
      // the page nothing of the answer, whatever the token.
      const blocked = await call(unlisted.page, token);
      assert.ok(!blocked.ok, JSON.stringify(blocked));
      assert.equal(blocked.code, Code.Unknown, JSON.stringify(blocked));
      assert.match(blocked.message, /fetch/i);

      // A token function is called once and its token reused until near its expiry.
      const reused = await listed.page.evaluate(
        async ({ sdkUrl, baseUrl, token }) => {
          const sdk = await import(sdkUrl);
          let fetched = 0;
          const client = sdk.createVoiceWebClient({
            baseUrl,
            token: async () => {
              fetched += 1;
              return { token, expireTime: Date.now() + 300_000 };
            },
          });
          await Promise.all([client.synthesis.listVoices({}), client.synthesis.listVoices({})]);
          await client.synthesis.listVoices({});
          return fetched;
        },
        { sdkUrl: SDK_URL, baseUrl: webUrl, token },
      );
      assert.equal(reused, 1);
    } finally {
      await listed.context.close();
      await unlisted.context.close();
    }
  });

  async function openPage(origin: string): Promise<{ page: Page; context: BrowserContext }> {
    const context = await browser.newContext();
    await context.addInitScript(installClipMicrophone);
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    return { page, context };
  }
});

interface ClipMicrophoneWindow {
  /** A "microphone" that plays `audio` (at `rate`) each time `play` is called: a MediaStream of another context. */
  clipMicrophone(audio: number[], rate: number): { stream: MediaStream; play(): AudioBufferSourceNode };
}

/** Runs in each page of openPage (so it may use nothing from this module): defines window.clipMicrophone. */
function installClipMicrophone(): void {
  (window as unknown as ClipMicrophoneWindow).clipMicrophone = (audio, rate) => {
    const player = new AudioContext({ sampleRate: rate });
    const clip = player.createBuffer(1, audio.length, rate);
    clip.copyToChannel(Float32Array.from(audio), 0);
    const destination = player.createMediaStreamDestination();
    return {
      stream: destination.stream,
      play() {
        const source = new AudioBufferSourceNode(player, { buffer: clip });
        source.connect(destination);
        source.start();
        return source;
      },
    };
  };
}

/** Errors the page logs or throws, to assert there are none. */
function watchPage(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  return problems;
}

/** Mints a client token through Access/CreateClientToken with the test's API key. */
async function mintToken(address: string, ttlSeconds: number): Promise<string> {
  const transport = createGrpcTransport({
    baseUrl: `http://${address}`,
    interceptors: [
      (next) => (request) => {
        request.header.set('x-api-key', API_KEY);
        return next(request);
      },
    ],
  });
  const { token } = await createClient(Access, transport).createClientToken({ ttlSeconds });
  return token;
}

/** The token's claims changed by `change` and signed with `secret` (HS256). */
function resign(
  token: string,
  secret: string,
  change: (claims: Record<string, unknown>) => Record<string, unknown>,
): string {
  const [header, payload] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as Record<string, unknown>;
  const body = `${header}.${Buffer.from(JSON.stringify(change(claims))).toString('base64url')}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function linear16(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(Math.floor(bytes.length / 2));
  for (let index = 0; index < out.length; index += 1) out[index] = view.getInt16(index * 2, true) / 32768;
  return out;
}
