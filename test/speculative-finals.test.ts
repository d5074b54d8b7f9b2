import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AudioEncoding, TimestampGranularity, type TranscribeResponse } from '../clients/node/index.js';
import type { Recognition, SpeechRecognizer, VoiceActivityDetector } from '../server/engines/types.js';
import { Reason, VoiceError } from '../server/errors.js';
import { resolveSegmenterConfig } from '../server/pipeline/utterance-segmenter.js';
import { type TranscribeResponseInit, transcribeStream } from '../server/service/transcribe-session.js';
import type { TranscriptionSettings } from '../server/service/transcription-config.js';
import { modelSections, testModels } from './helpers/models.js';
import { concat, silence as quiet, RATE, speak, speechBounds, toLinear16 } from './helpers/speech.js';
import { startServerWithEngines } from './helpers/test-server.js';

/**
 * The transcription session over a scripted VAD and a fake recognizer, fed one 32 ms frame per
 * chunk, so each test knows which frame every event comes from. With the defaults (min silence
 * 500 ms, padding 200 ms) speech whose first silent frame is F is speculated on with frame F + 6
 * (224 ms of silence) and confirmed with frame F + 15 (512 ms); the detector hands the VAD two
 * frames at a time. Then the real server, over eSpeak speech.
 */

const FRAME = 512;
const FRAME_MS = 32;
const LOUD = 0.5;
const TIMEOUT = { timeout: 10_000 };

type Script = ReadonlyArray<'speech' | 'silence'>;
const speech = (frames: number): Script => Array.from({ length: frames }, () => 'speech');
const silence = (frames: number): Script => Array.from({ length: frames }, () => 'silence');

/** A VAD session that calls a frame speech when it is loud: the test audio is its script. */
const scriptedVad: VoiceActivityDetector = {
  model: 'scripted-vad',
  openSession: () => ({
    frameSamples: FRAME,
    probabilities: async (frames) =>
      Float32Array.from({ length: frames.length / FRAME }, (_, index) =>
        Math.abs(frames[index * FRAME] ?? 0) >= LOUD / 2 ? 0.9 : 0.02,
      ),
    close: () => {},
  }),
};

interface FakeCall {
  /** A copy of the samples the call was given. */
  readonly audio: Float32Array;
  readonly priority: 'final' | 'interim';
  readonly signal: AbortSignal;
  /** Frames the session had been given when the call was made. */
  readonly fedFrames: number;
  resolve(text: string): void;
  reject(error: unknown): void;
}

/**
 * A recognizer whose calls the test answers, recorded in the order made; it ignores aborts. After
 * `answerAll(text)`, every call still open and every later one gets that answer, so a session that
 * misbehaves still ends, and fails on an assertion instead of waiting for an answer forever.
 */
function fakeRecognizer(fedFrames: () => number) {
  const calls: FakeCall[] = [];
  const waiters = new Map<number, () => void>();
  let answer: string | undefined;
  const recognizer: SpeechRecognizer = {
    defaultModel: 'fake-asr',
    allowedModels: [],
    maxInputSamples: 30 * 16_000,
    recognize: (audio, options) =>
      new Promise<Recognition>((resolve, reject) => {
        const call: FakeCall = {
          audio: audio.slice(),
          priority: options.priority,
          signal: options.signal,
          fedFrames: fedFrames(),
          resolve: (text) => resolve({ text, language: 'en', model: 'fake-asr', segments: [], words: [] }),
          reject,
        };
        calls.push(call);
        if (answer !== undefined) call.resolve(answer);
        waiters.get(calls.length - 1)?.();
      }),
  };
  /** Resolves with the `index`-th call (from 0) once it has been made. */
  const call = async (index: number): Promise<FakeCall> => {
    if (calls.length <= index) await new Promise<void>((resolve) => waiters.set(index, resolve));
    return calls[index] as FakeCall;
  };
  const answerAll = (text: string) => {
    answer = text;
    for (const open of calls) open.resolve(text);
  };
  return { recognizer, calls, call, answerAll };
}

function settings(overrides: Partial<TranscriptionSettings> = {}): TranscriptionSettings {
  return {
    format: { encoding: 'float32', sampleRate: 16_000, channels: 1 },
    language: 'en',
    interimResults: false,
    interimIntervalMs: 1000,
    segmenter: resolveSegmenterConfig({ maxUtteranceMs: 30_000 }),
    timestamps: 'none',
    model: 'fake-asr',
    speculativeFinals: true,
    ...overrides,
  };
}

/**
 * Runs a session over the script. `gates` pauses the audio before the frame of the given index
 * until the promise it returns settles, so a test can act between frames.
 */
function session(
  script: Script,
  options: {
    settings?: Partial<TranscriptionSettings>;
    gates?: Record<number, () => Promise<unknown>>;
    signal?: AbortSignal;
    /** Whether the server has spare capacity for speculative work (absent: always). */
    spare?: () => boolean;
    /** Frames sent per chunk (1: real time, frame by frame). */
    chunkFrames?: number;
  } = {},
) {
  let fed = 0;
  const fake = fakeRecognizer(() => fed);
  const chunkFrames = options.chunkFrames ?? 1;
  async function* audio(): AsyncGenerator<Uint8Array> {
    for (let index = 0; index < script.length; index += chunkFrames) {
      await options.gates?.[index]?.();
      const frames = script.slice(index, index + chunkFrames);
      const chunk = new Float32Array(FRAME * frames.length);
      for (const [i, kind] of frames.entries()) {
        chunk.fill(kind === 'speech' ? LOUD : 0, i * FRAME, (i + 1) * FRAME);
      }
      fed = index + frames.length;
      yield new Uint8Array(chunk.buffer);
    }
  }
  const responses: TranscribeResponseInit[] = [];
  const listeners = new Set<() => void>();
  const stream = transcribeStream(
    audio(),
    settings(options.settings),
    {
      vad: scriptedVad,
      recognizer: fake.recognizer,
      limits: { maxChunkBytes: 1 << 20, maxAudioSeconds: 600 },
      ...(options.spare === undefined ? {} : { hasSpareCapacity: options.spare }),
    },
    options.signal ?? new AbortController().signal,
  );
  const done = (async () => {
    for await (const response of stream) {
      responses.push(response);
      for (const listener of listeners) listener();
    }
  })();
  /** Resolves once a response satisfying `predicate` has arrived. */
  const arrival = (predicate: (response: TranscribeResponseInit) => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (responses.some(predicate)) {
          listeners.delete(check);
          resolve();
        }
      };
      listeners.add(check);
      check();
    });
  return { ...fake, responses, done, arrival };
}

const results = (responses: readonly TranscribeResponseInit[]) =>
  responses.flatMap((response) => (response.event?.case === 'result' ? [response.event.value] : []));
const finals = (responses: readonly TranscribeResponseInit[]) =>
  results(responses).filter((result) => result.isFinal);
const isFinal = (response: TranscribeResponseInit) =>
  response.event?.case === 'result' && response.event.value.isFinal === true;

/**
 * Speech ends with frame 61 (at 1984 ms). Frame 68 brings 224 ms of silence, covering the padding;
 * frame 77 brings 512 ms, confirming the utterance. The VAD takes frames in pairs, so each is
 * acted on once the frame after it has been read.
 */
const ONE_UTTERANCE: Script = [...silence(31), ...speech(31), ...silence(40)];
const SPECULATING_FRAME = 68;
const CONFIRMING_FRAME = 77;

describe('speculative finals in the transcription session', () => {
  test(
    'without spare capacity nothing is speculated: the final starts when the utterance is confirmed',
    TIMEOUT,
    async () => {
      const s = session(ONE_UTTERANCE, { spare: () => false });
      s.answerAll('not speculated');
      await s.done;
      assert.equal(s.calls.length, 1);
      assert.equal(s.calls[0]?.fedFrames, CONFIRMING_FRAME + 1);
      assert.deepEqual(
        finals(s.responses).map((result) => result.text),
        ['not speculated'],
      );
    },
  );

  test('a speculation that the same VAD batch cancels never reaches the recognizer', TIMEOUT, async () => {
    // A 256 ms pause inside the utterance: long enough to speculate, short of min silence. Sent
    // all at once, the VAD sees the pause and the speech after it in one batch.
    const script: Script = [...silence(10), ...speech(20), ...silence(8), ...speech(20), ...silence(30)];
    const s = session(script, { chunkFrames: script.length });
    s.answerAll('one final');
    await s.done;
    assert.equal(s.calls.length, 1, 'only the final of the whole utterance');
    assert.deepEqual(
      finals(s.responses).map((result) => result.text),
      ['one final'],
    );
  });

  test(
    'silence that holds: one recognition, started before min silence, sent the moment the utterance is confirmed',
    TIMEOUT,
    async () => {
      let callsBeforeConfirmation = -1;
      let callsWhenFinalArrived = -1;
      const s = session(ONE_UTTERANCE, {
        gates: {
          // Before the frame that confirms the utterance, its recognition has been made (and answered).
          [CONFIRMING_FRAME]: async () => {
            callsBeforeConfirmation = s.calls.length;
          },
          // The final goes out with no further audio.
          [CONFIRMING_FRAME + 1]: async () => {
            await s.arrival(isFinal);
            callsWhenFinalArrived = s.calls.length;
          },
        },
      });
      s.answerAll('speculated');
      await s.done;
      assert.equal(callsBeforeConfirmation, 1);
      assert.equal(callsWhenFinalArrived, 1, 'no second recognition for the final');
      assert.equal(s.calls.length, 1);
      const [call] = s.calls;
      assert.equal(call?.priority, 'final');
      // 9 frames (288 ms of audio) before the frame that confirms the utterance.
      assert.equal(call?.fedFrames, SPECULATING_FRAME + 2);
      const [final] = finals(s.responses);
      assert.equal(final?.text, 'speculated');
      assert.equal(final?.utteranceIndex, 0);
      assert.equal(final?.startMs, 31 * FRAME_MS - 200);
      assert.equal(final?.endMs, 62 * FRAME_MS + 200);
      assert.equal(call?.audio.length, ((final.endMs ?? 0) - (final.startMs ?? 0)) * 16);
      assert.equal(finals(s.responses).length, 1);
    },
  );

  test('speculation off: recognition starts only once the utterance is confirmed', TIMEOUT, async () => {
    const s = session(ONE_UTTERANCE, { settings: { speculativeFinals: false } });
    s.answerAll('confirmed');
    await s.done;
    assert.equal(s.calls.length, 1);
    assert.equal(s.calls[0]?.fedFrames, CONFIRMING_FRAME + 1);
    assert.deepEqual(
      finals(s.responses).map((result) => result.text),
      ['confirmed'],
    );
  });

  test(
    'speech that resumes aborts the speculation, never sends its result, and sends the longer final once',
    TIMEOUT,
    async () => {
      // Speculated on with frame 36, cancelled by the speech of frame 40, speculated on again at 66.
      const script = [...silence(10), ...speech(20), ...silence(10), ...speech(20), ...silence(30)];
      let abortedWhenSpeechResumed: boolean | undefined;
      const s = session(script, {
        gates: {
          // The events of frame 40 (read with frame 41) have been handled before frame 42 is read.
          42: async () => {
            const dropped = s.calls[0];
            abortedWhenSpeechResumed = dropped?.signal.aborted;
            // A worker that answers anyway: the answer must go nowhere.
            dropped?.resolve('dropped');
            s.answerAll('kept');
          },
        },
      });
      await s.done;
      assert.equal(abortedWhenSpeechResumed, true);
      assert.equal(s.calls.length, 2);
      assert.equal(s.calls[1]?.fedFrames, 66 + 2, 'the longer utterance is speculated on too');
      assert.equal(s.calls[1]?.signal.aborted, false);
      assert.deepEqual(
        results(s.responses).map((result) => [
          result.text,
          result.utteranceIndex,
          result.startMs,
          result.endMs,
        ]),
        [['kept', 0, 10 * FRAME_MS - 200, 60 * FRAME_MS + 200]],
      );
    },
  );

  test(
    'a speculation that failed is dropped with it when speech resumes; the stream goes on',
    TIMEOUT,
    async () => {
      const script = [...silence(10), ...speech(20), ...silence(10), ...speech(20), ...silence(30)];
      const s = session(script);
      (await s.call(0)).reject(new VoiceError(Reason.Internal, 'the engine broke'));
      s.answerAll('kept');
      await s.done;
      assert.equal(s.calls.length, 2);
      assert.deepEqual(
        finals(s.responses).map((result) => result.text),
        ['kept'],
      );
    },
  );

  test('a confirmed speculation that failed ends the stream as a failed final does', TIMEOUT, async () => {
    const s = session(ONE_UTTERANCE);
    (await s.call(0)).reject(new VoiceError(Reason.Internal, 'the engine broke'));
    s.answerAll('never');
    await assert.rejects(
      s.done,
      (error: unknown) => error instanceof VoiceError && error.reason === Reason.Internal,
    );
    assert.equal(s.calls.length, 1);
    assert.deepEqual(finals(s.responses), []);
  });

  test(
    'a speculation whose worker crashed is retried once, at once, with the same samples',
    TIMEOUT,
    async () => {
      const s = session(ONE_UTTERANCE);
      (await s.call(0)).reject(new VoiceError(Reason.WorkerCrashed, 'the worker died'));
      s.answerAll('retried');
      await s.done;
      assert.equal(s.calls.length, 2);
      const [crashed, retry] = s.calls;
      assert.equal(retry?.priority, 'final');
      assert.ok(
        retry !== undefined && retry.fedFrames < CONFIRMING_FRAME,
        'retried before the utterance is confirmed',
      );
      assert.deepEqual(retry?.audio, crashed?.audio);
      assert.deepEqual(
        finals(s.responses).map((result) => result.text),
        ['retried'],
      );
    },
  );

  test(
    'an interim of the utterance is aborted when speculation starts, and none starts while it runs',
    TIMEOUT,
    async () => {
      // Speech ends with frame 39; frame 46 (the 7th silent one) starts the speculation.
      const script = [...silence(10), ...speech(30), ...silence(30)];
      let atSpeculation: Array<[string, boolean]> = [];
      const s = session(script, {
        settings: { interimResults: true, interimIntervalMs: 250 },
        gates: {
          48: async () => {
            atSpeculation = s.calls.map((call) => [call.priority, call.signal.aborted]);
            s.calls[0]?.resolve('late interim');
            s.answerAll('final text');
          },
        },
      });
      await s.done;
      assert.deepEqual(atSpeculation, [
        ['interim', true],
        ['final', false],
      ]);
      assert.deepEqual(
        s.calls.map((call) => call.priority),
        ['interim', 'final'],
      );
      assert.deepEqual(
        results(s.responses).map((result) => [result.text, result.isFinal]),
        [['final text', true]],
      );
    },
  );

  test('a stream that ends in the silence flushes its utterance with the speculation', TIMEOUT, async () => {
    const s = session([...silence(10), ...speech(20), ...silence(10)]);
    s.answerAll('flushed');
    await s.done;
    assert.equal(s.calls.length, 1);
    assert.deepEqual(
      finals(s.responses).map((result) => [result.text, result.endMs]),
      [['flushed', 30 * FRAME_MS + 200]],
    );
  });

  test('finals stay in utterance order when a later speculation finishes first', TIMEOUT, async () => {
    const script = [...silence(10), ...speech(20), ...silence(20), ...speech(20), ...silence(30)];
    const s = session(script);
    const first = await s.call(0);
    (await s.call(1)).resolve('second');
    // The second utterance is confirmed and its result ready; the first still holds the order.
    await s.arrival(
      (response) => response.event?.case === 'speechEnded' && response.event.value.utteranceIndex === 1,
    );
    assert.deepEqual(finals(s.responses), []);
    first.resolve('first');
    s.answerAll('more');
    await s.done;
    assert.equal(s.calls.length, 2);
    assert.deepEqual(
      finals(s.responses).map((result) => [result.text, result.utteranceIndex]),
      [
        ['first', 0],
        ['second', 1],
      ],
    );
  });

  test('aborting the call aborts the speculation in progress', TIMEOUT, async () => {
    const controller = new AbortController();
    const s = session(ONE_UTTERANCE, { signal: controller.signal });
    const call = await s.call(0);
    controller.abort(new VoiceError(Reason.Cancelled, 'the client went away'));
    assert.ok(call.signal.aborted);
    assert.ok(call.fedFrames <= CONFIRMING_FRAME, 'the call aborted was the speculation');
    await assert.rejects(s.done);
  });
});

describe('speculative finals through the server', () => {
  test('real VAD and model: the finals are the same with speculation on and off', {
    timeout: 120_000,
  }, async () => {
    // eSpeak's own leading and trailing silence is cut, so the gaps are what they say. The 350 ms
    // pause inside the second utterance is long enough to speculate on, too short to end it.
    const spoken = (text: string) => {
      const samples = speak(text);
      const bounds = speechBounds(samples);
      return samples.subarray((bounds.startMs * RATE) / 1000, (bounds.endMs * RATE) / 1000);
    };
    const clip = concat(
      quiet(0.5),
      spoken('The weather is lovely today.'),
      quiet(1.2),
      spoken('Please send me the report'),
      quiet(0.35),
      spoken('by Friday.'),
      quiet(1.2),
      spoken('Thank you, and see you soon.'),
      quiet(1),
    );
    const base = modelSections(await testModels()) as { models: { stt: Record<string, unknown> } };
    const finalsWith = async (speculative: boolean) => {
      const server = await startServerWithEngines({
        models: { ...base.models, stt: { ...base.models.stt, speculative_finals: speculative } },
        performance: { workers: 1 },
      });
      try {
        const responses: TranscribeResponse[] = [];
        async function* requests() {
          yield {
            request: {
              case: 'config' as const,
              value: {
                audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: RATE, channels: 1 },
                language: 'en',
                timestamps: TimestampGranularity.WORD,
              },
            },
          };
          const bytes = toLinear16(clip);
          for (let offset = 0; offset < bytes.length; offset += 3200) {
            yield { request: { case: 'audio' as const, value: bytes.subarray(offset, offset + 3200) } };
          }
        }
        for await (const response of server.client.transcription.transcribe(requests()))
          responses.push(response);
        return responses.flatMap((response) =>
          response.event.case === 'result' && response.event.value.isFinal ? [response.event.value] : [],
        );
      } finally {
        await server.stop();
      }
    };
    const on = await finalsWith(true);
    const off = await finalsWith(false);
    assert.equal(off.length, 3);
    assert.ok(off.every((result) => result.words.length > 0));
    assert.deepEqual(on, off);
  });
});
