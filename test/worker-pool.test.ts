import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { Code } from '@connectrpc/connect';
import { pino } from 'pino';
import wavefile from 'wavefile';
import { createEspeakSynthesizer } from '../server/engines/espeak-ng.js';
import { createSileroVad } from '../server/engines/silero-vad.js';
import { Reason, VoiceError } from '../server/errors.js';
import { createMetrics } from '../server/observability/metrics.js';
import type { EngineJobs, EngineReport, EngineWorkerData, TestJobs } from '../server/workers/messages.js';
import { createWorkerPool, type WorkerPool, type WorkerPoolOptions } from '../server/workers/pool.js';
import { createRemoteEngines, type RemoteEngines } from '../server/workers/remote-engines.js';
import { generateWhisperModel } from './fixtures/whisper-model.js';
import { captureLogs } from './helpers/log-capture.js';

const FRAME = 512;
const never = new AbortController().signal;
type HookPool = WorkerPool<TestJobs, EngineReport>;

/** espeak-ng (Debian binary) speech as 16 kHz floats. */
async function speak(text: string, dir: string): Promise<Float32Array> {
  const path = join(dir, `speech-${Date.now()}-${Math.random()}.wav`);
  execFileSync('espeak-ng', ['-v', 'en-us', '-w', path, text]);
  const wav = new wavefile.WaveFile(await readFile(path));
  wav.toSampleRate(16_000);
  return Float32Array.from(wav.getSamples(false, Float64Array) as unknown as Float64Array, (s) => s / 32768);
}

function isVoiceError(reason: Reason, code?: Code, text?: string) {
  return (error: unknown) => {
    assert.ok(error instanceof VoiceError, `expected a VoiceError, got ${String(error)}`);
    assert.equal(error.reason, reason);
    if (code !== undefined) assert.equal(error.code, code);
    if (text !== undefined) assert.ok(error.rawMessage.includes(text), error.rawMessage);
    return true;
  };
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function gauge(metric: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> {
  return (await metric.get()).values[0]?.value ?? 0;
}

function hookPool(overrides: Partial<WorkerPoolOptions> = {}): HookPool {
  return createWorkerPool<TestJobs, EngineReport>({
    name: 'test',
    size: 1,
    workerData: { testHooks: true } satisfies EngineWorkerData,
    queueSize: 10,
    restartDelayMs: 20,
    loadRetry: { initialMs: 20, maxMs: 200 },
    ...overrides,
  });
}

describe('engine worker pools with real engines', () => {
  let dir: string;
  let vadPool: WorkerPool<EngineJobs, EngineReport>;
  let inferencePool: WorkerPool<EngineJobs, EngineReport>;
  let vadReport: EngineReport;
  let inferenceReport: EngineReport;
  let engines: RemoteEngines;
  let modelId: string;
  let speech: Float32Array;
  const metrics = createMetrics();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'worker-pool-'));
    const model = await generateWhisperModel({ root: dir, text: 'Hello world.' });
    modelId = model.modelId;
    speech = await speak('hello world, this is a test of the worker pool', dir);
    vadPool = createWorkerPool({
      name: 'vad',
      size: 1,
      workerData: { vad: { version: 'v6', threads: 1 } } satisfies EngineWorkerData,
      queueSize: 50,
      metrics,
    });
    inferencePool = createWorkerPool({
      name: 'inference',
      size: 1,
      workerData: {
        asr: {
          cacheDir: dir,
          allowRemote: false,
          defaultModel: modelId,
          dtype: 'fp32',
          allowedModels: [],
          device: 'cpu',
          threads: 1,
        },
        tts: {
          espeak: true,
          defaultVoice: 'espeak:en-us',
          neural: { cacheDir: dir, allowRemote: false, models: [], threads: 1 },
        },
      } satisfies EngineWorkerData,
      queueSize: 50,
      metrics,
    });
    [vadReport, inferenceReport] = await Promise.all([vadPool.start(), inferencePool.start()]);
    engines = createRemoteEngines({
      vad: { pool: vadPool, report: vadReport },
      inference: { pool: inferencePool, report: inferenceReport },
    });
  });

  after(async () => {
    await Promise.all([vadPool?.close(), inferencePool?.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  test('workers report what they loaded', () => {
    assert.deepEqual(vadReport.vad, {
      available: true,
      model: 'silero-vad-v6',
      frameSamples: FRAME,
      stateLength: 320,
    });
    assert.equal(vadReport.asr, undefined);
    assert.ok(inferenceReport.asr?.available);
    const { costs, ...asr } = inferenceReport.asr;
    const cost = costs[modelId];
    assert.ok(
      cost !== undefined && cost.fixedSeconds >= 0 && cost.perAudioSecond >= 0,
      'warm-up calibrated the cost',
    );
    assert.deepEqual(asr, {
      available: true,
      defaultModel: modelId,
      englishModel: undefined,
      maxInputSamples: 30 * 16_000,
      allowedModels: [modelId],
      unavailableModels: {},
      wordTimestampModels: [modelId],
    });
    assert.ok(inferenceReport.tts?.available);
    assert.ok(inferenceReport.tts.voices.some((voice) => voice.id === 'espeak:en-us'));
    assert.deepEqual(engines.unavailable, {});
    assert.equal(engines.synthesizer?.voices().length, inferenceReport.tts.voices.length);
  });

  test('VAD batches in the worker score exactly as frame by frame in process, in order, across batches', async () => {
    const vad = await createSileroVad({ version: 'v6' });
    const frames = speech.subarray(0, speech.length - (speech.length % FRAME));
    const local = vad.openSession();
    const expected: number[] = [];
    for (let i = 0; i < frames.length; i += FRAME) {
      expected.push(...(await local.probabilities(frames.subarray(i, i + FRAME), { signal: never })));
    }
    await vad.release();
    assert.ok(expected.some((p) => p > 0.5) && expected.some((p) => p < 0.1), 'speech and pauses');

    const session = engines.vad?.openSession();
    assert.ok(session);
    // Batches of 10 frames, not awaited in turn: the session keeps them in order.
    const pending: Promise<Float32Array>[] = [];
    for (let i = 0; i < frames.length; i += 10 * FRAME) {
      pending.push(session.probabilities(frames.slice(i, i + 10 * FRAME), { signal: never }));
    }
    const remote = (await Promise.all(pending)).flatMap((batch) => [...batch]);
    assert.deepEqual(remote, expected);
    session.close();
  });

  test('audio is transferred to the worker, not copied: the sender is detached at once', async () => {
    const frames = speech.slice(0, 31 * FRAME);
    const state = new Float32Array(320);
    const job = vadPool.run(
      'vad',
      { frames, state },
      { priority: 0, signal: never, transfer: [frames.buffer] },
    );
    assert.equal(frames.byteLength, 0);
    assert.equal(frames.buffer.byteLength, 0);
    const result = await job;
    assert.equal(result.probabilities.length, 31);
    assert.equal(result.state.length, 320);
    assert.equal(state.byteLength, 320 * 4, 'the state goes as a copy');

    const audio = speech.slice();
    const recognition = engines.recognizer?.recognize(audio, {
      signal: never,
      language: 'en',
      timestamps: 'none',
      priority: 'final',
      model: undefined,
    });
    assert.equal(audio.byteLength, 0, 'the recognizer took the buffer');
    assert.equal((await recognition)?.text, 'Hello world.');

    // A view into a larger buffer is copied, never detaching the rest of the caller's buffer.
    const view = speech.subarray(0, FRAME * 2);
    await engines.vad?.openSession().probabilities(view, { signal: never });
    assert.equal(speech.byteLength, speech.length * 4);
  });

  test('recognition in the worker gives the in-process result', async () => {
    const result = await engines.recognizer?.recognize(speech.slice(), {
      signal: never,
      language: undefined,
      timestamps: 'segment',
      priority: 'interim',
      model: undefined,
    });
    assert.equal(result?.text, 'Hello world.');
    assert.equal(result?.model, modelId);
    assert.equal(result?.segments.length, 1);
    await assert.rejects(
      engines.recognizer?.recognize(speech.slice(), {
        signal: never,
        language: 'en',
        timestamps: 'none',
        priority: 'final',
        model: 'someone/else',
      }) ?? Promise.resolve(),
      isVoiceError(Reason.UnknownResource, Code.InvalidArgument, 'someone/else'),
    );
  });

  test('synthesis in the worker gives the in-process samples', async () => {
    const local = createEspeakSynthesizer();
    const options = { voice: 'espeak:en-gb', speed: 1.2, signal: never };
    const expected = await local.synthesize('Worker threads speak too.', options);
    const remote = await engines.synthesizer?.synthesize('Worker threads speak too.', options);
    assert.equal(remote?.sampleRate, expected.sampleRate);
    assert.equal(remote?.speedApplied, true);
    // eSpeak's pitch flutter runs on across calls, so the samples differ by a few ms; the speech doesn't.
    const difference = Math.abs((remote?.samples.length ?? 0) - expected.samples.length);
    assert.ok(
      difference < 0.02 * expected.sampleRate,
      `${remote?.samples.length} vs ${expected.samples.length}`,
    );
    assert.deepEqual(
      remote?.timing?.phonemes.map((p) => p.ipa),
      expected.timing?.phonemes.map((p) => p.ipa),
    );
    assert.deepEqual(
      remote?.timing?.words.map((w) => [w.start, w.end]),
      expected.timing?.words.map((w) => [w.start, w.end]),
    );
    await assert.rejects(
      engines.synthesizer?.synthesize('x', { ...options, voice: 'espeak:xx-nowhere' }) ?? Promise.resolve(),
      isVoiceError(Reason.UnknownResource, Code.InvalidArgument, 'espeak:xx-nowhere'),
    );
  });

  test('inference time is recorded per kind and model; queue and busy gauges return to zero', async () => {
    const counts = new Map<string, number>();
    for (const value of (await metrics.inferenceSeconds.get()).values) {
      if (value.metricName?.endsWith('_count') !== true) continue;
      counts.set(`${value.labels.kind}/${value.labels.model}`, value.value);
    }
    assert.ok((counts.get('vad/silero-vad-v6') ?? 0) >= 5, JSON.stringify([...counts]));
    assert.ok((counts.get(`recognize/${modelId}`) ?? 0) >= 2);
    assert.equal(counts.get('synthesize/espeak-ng'), 1);
    assert.equal(await gauge(metrics.queueDepth), 0);
    assert.equal(await gauge(metrics.busyWorkers), 0);
  });

  test('measures: VAD cost per second of audio in the worker and job round trip', async (t) => {
    const session = engines.vad?.openSession();
    assert.ok(session);
    const batches = 20;
    const before = (await metrics.inferenceSeconds.get()).values.find(
      (v) => v.metricName?.endsWith('_sum') === true && v.labels.kind === 'vad',
    )?.value;
    const started = performance.now();
    for (let b = 0; b < batches; b++) {
      await session.probabilities(speech.slice(0, 31 * FRAME), { signal: never });
    }
    const wall = (performance.now() - started) / 1000;
    const afterSum = (await metrics.inferenceSeconds.get()).values.find(
      (v) => v.metricName?.endsWith('_sum') === true && v.labels.kind === 'vad',
    )?.value;
    const inWorker = ((afterSum ?? 0) - (before ?? 0)) / batches;
    const roundTrip = wall / batches;
    t.diagnostic(
      `VAD batch of 31 frames (0.99 s of audio): ${(inWorker * 1000).toFixed(2)} ms in the worker, ` +
        `${(roundTrip * 1000).toFixed(2)} ms round trip → one VAD worker serves ~${Math.floor(0.99 / roundTrip)} real-time streams`,
    );
    assert.ok(inWorker > 0 && roundTrip >= inWorker);
  });

  test('a missing ASR model is reported with its id and folder; the worker still serves synthesis', async () => {
    const empty = join(dir, 'empty');
    const pool = createWorkerPool<EngineJobs, EngineReport>({
      name: 'inference',
      size: 1,
      workerData: {
        asr: {
          cacheDir: empty,
          allowRemote: false,
          defaultModel: 'onnx-community/whisper-base',
          dtype: 'q8',
          allowedModels: [],
          device: 'cpu',
          threads: 1,
        },
        tts: {
          espeak: true,
          defaultVoice: 'espeak:en-us',
          neural: {
            cacheDir: empty,
            allowRemote: false,
            models: [{ id: 'Xenova/mms-tts-eng', language: 'en' }],
            threads: 1,
          },
        },
      } satisfies EngineWorkerData,
      queueSize: 5,
    });
    try {
      const report = await pool.start();
      assert.equal(report.asr?.available, false);
      const reason = report.asr?.available === false ? report.asr.reason : '';
      assert.ok(reason.includes('"onnx-community/whisper-base"'), reason);
      assert.ok(reason.includes(join(empty, 'onnx-community', 'whisper-base')), reason);
      assert.ok(report.tts?.available);
      assert.deepEqual(
        report.tts.unavailable.map((u) => u.what),
        ['Xenova/mms-tts-eng'],
      );
      const remote = createRemoteEngines({
        vad: { pool: vadPool, report: vadReport },
        inference: { pool, report },
      });
      assert.equal(remote.recognizer, undefined);
      assert.equal(remote.unavailable.recognizer, reason);
      await assert.rejects(
        pool.run(
          'recognize',
          { audio: new Float32Array(16), language: 'en', timestamps: 'none', model: undefined },
          {
            priority: 1,
            signal: never,
          },
        ),
        isVoiceError(Reason.EngineUnavailable, Code.Unavailable),
      );
      const audio = await remote.synthesizer?.synthesize('still here', {
        voice: '',
        speed: 1,
        signal: never,
      });
      assert.ok((audio?.samples.length ?? 0) > 1000);
    } finally {
      await pool.close();
    }
  });
});

describe('worker pool scheduling, aborts and crashes (test-hook workers)', () => {
  test('queue full of equal or better jobs: rejects at once with RESOURCE_EXHAUSTED naming request_queue_size', async () => {
    const pool = hookPool({ queueSize: 2 });
    await pool.start();
    try {
      const running = pool.run('sleep', { ms: 300 }, { priority: 1, signal: never });
      await until(() => pool.stats().busy === 1, 'the first job to start');
      const waiting = [1, 2].map(() => pool.run('sleep', { ms: 1 }, { priority: 1, signal: never }));
      for (const later of [running, ...waiting]) later.catch(() => undefined);
      const buffer = new ArrayBuffer(64);
      const started = performance.now();
      await assert.rejects(
        pool.run('echo', { buffer }, { priority: 1, signal: never, transfer: [buffer] }),
        (error: unknown) => {
          isVoiceError(Reason.Overloaded, Code.ResourceExhausted)(error);
          const e = error as VoiceError;
          assert.equal(
            e.rawMessage,
            'the "test" worker queue is full (performance.request_queue_size = 2); retry later',
          );
          assert.ok((e.retryAfterMs ?? 0) > 0);
          assert.deepEqual(e.info, { limit: 'performance.request_queue_size' });
          return true;
        },
      );
      assert.ok(performance.now() - started < 150, 'rejected at once');
      assert.equal(buffer.byteLength, 64, 'a refused job keeps the caller’s buffer');
      await Promise.all([running, ...waiting]);
    } finally {
      await pool.close();
    }
  });

  test('queue full: a final takes the place of a queued interim, which is refused as overloaded', async () => {
    const metrics = createMetrics();
    const pool = hookPool({ queueSize: 1, metrics });
    await pool.start();
    const overloaded = (error: unknown) => {
      isVoiceError(Reason.Overloaded, Code.ResourceExhausted)(error);
      assert.equal(
        (error as VoiceError).rawMessage,
        'the "test" worker queue is full (performance.request_queue_size = 1); retry later',
      );
      return true;
    };
    try {
      const running = pool.run('sleep', { ms: 300 }, { priority: 3, signal: never });
      await until(() => pool.stats().busy === 1, 'the first job to start');
      const interim = pool.run('echo', { tag: 'interim' }, { priority: 3, signal: never });
      const interimRefused = assert.rejects(interim, overloaded);
      const started = performance.now();
      const final = pool.run('echo', { tag: 'final' }, { priority: 1, signal: never });
      for (const later of [running, final]) later.catch(() => undefined);
      await interimRefused;
      assert.ok(performance.now() - started < 150, 'the interim is refused at once');
      assert.equal(pool.stats().queued, 1);
      // The final now holds the only place: neither synthesis nor another interim outranks it.
      await assert.rejects(
        pool.run('echo', { tag: 'synthesis' }, { priority: 2, signal: never }),
        overloaded,
      );
      await assert.rejects(pool.run('echo', { tag: 'interim' }, { priority: 3, signal: never }), overloaded);
      assert.equal((await final).tag, 'final');
      assert.equal(await running, 300);
      assert.equal(await gauge(metrics.queueDepth), 0);
      assert.equal(await gauge(metrics.busyWorkers), 0);
    } finally {
      await pool.close();
    }
  });

  test('queue full: the newest job of the worst queued priority is the one refused', async () => {
    const pool = hookPool({ queueSize: 3 });
    await pool.start();
    try {
      const order: string[] = [];
      const settled = new Map<string, string>();
      const tagged = (tag: string, priority: number) => {
        const job = pool.run('echo', { tag }, { priority, signal: never }).then(
          (r) => {
            order.push(r.tag ?? '');
            settled.set(tag, 'ran');
          },
          (error: unknown) => {
            settled.set(tag, error instanceof VoiceError ? error.reason : String(error));
          },
        );
        return job;
      };
      const busy = pool.run('sleep', { ms: 200 }, { priority: 0, signal: never });
      // Awaited below; should an assertion fail first, close() rejecting it must not hide that failure.
      busy.catch(() => undefined);
      await until(() => pool.stats().busy === 1, 'the worker to be busy');
      const jobs = [tagged('synthesis', 2), tagged('interim-old', 3), tagged('interim-new', 3)];
      jobs.push(tagged('final-1', 1));
      assert.equal(settled.size, 0, 'nothing settles synchronously');
      await sleep(0);
      assert.deepEqual([...settled], [['interim-new', Reason.Overloaded]]);
      jobs.push(tagged('final-2', 1), tagged('final-3', 1), tagged('final-4', 1));
      await Promise.all([...jobs, busy]);
      assert.deepEqual(Object.fromEntries(settled), {
        'interim-new': Reason.Overloaded,
        'interim-old': Reason.Overloaded,
        synthesis: Reason.Overloaded,
        'final-4': Reason.Overloaded,
        'final-1': 'ran',
        'final-2': 'ran',
        'final-3': 'ran',
      });
      assert.deepEqual(order, ['final-1', 'final-2', 'final-3']);
      assert.equal(pool.stats().queued, 0);
    } finally {
      await pool.close();
    }
  });

  test('higher priority runs first, FIFO within a priority', async () => {
    const pool = hookPool();
    await pool.start();
    try {
      const order: string[] = [];
      const tagged = (tag: string, priority: number) =>
        pool.run('echo', { tag }, { priority, signal: never }).then((r) => order.push(r.tag ?? ''));
      const busy = pool.run('sleep', { ms: 150 }, { priority: 0, signal: never });
      await until(() => pool.stats().busy === 1, 'the worker to be busy');
      await Promise.all([
        tagged('interim-1', 3),
        tagged('synthesis', 2),
        tagged('interim-2', 3),
        tagged('final-1', 1),
        tagged('final-2', 1),
        tagged('vad', 0),
        busy,
      ]);
      assert.deepEqual(order, ['vad', 'final-1', 'final-2', 'synthesis', 'interim-1', 'interim-2']);
    } finally {
      await pool.close();
    }
  });

  test('abort while queued: removed at once, rejects with the signal reason, never runs', async () => {
    const pool = hookPool();
    await pool.start();
    try {
      const busy = pool.run('sleep', { ms: 200 }, { priority: 0, signal: never });
      await until(() => pool.stats().busy === 1, 'the worker to be busy');
      const controller = new AbortController();
      // Were it to run, it would kill the worker and show as a restart.
      const doomed = pool.run('crash', { mode: 'exit' }, { priority: 0, signal: controller.signal });
      assert.equal(pool.stats().queued, 1);
      const reason = new VoiceError(Reason.Cancelled, 'the caller went away');
      const started = performance.now();
      controller.abort(reason);
      await assert.rejects(doomed, (error: unknown) => error === reason);
      assert.ok(performance.now() - started < 150);
      assert.equal(pool.stats().queued, 0);
      await busy;
      await pool.run('echo', {}, { priority: 0, signal: never });
      assert.equal(pool.stats().restarts, 0);
      await assert.rejects(
        pool.run('echo', {}, { priority: 0, signal: controller.signal }),
        (error: unknown) => error === reason,
      );
    } finally {
      await pool.close();
    }
  });

  test('abort while running: the caller is answered at once and the worker stops the job', async () => {
    const pool = hookPool();
    await pool.start();
    try {
      const controller = new AbortController();
      const job = pool.run('sleep', { ms: 10_000 }, { priority: 0, signal: controller.signal });
      await until(() => pool.stats().busy === 1, 'the job to start');
      const started = performance.now();
      controller.abort(new VoiceError(Reason.DeadlineExceeded, 'deadline passed'));
      await assert.rejects(job, isVoiceError(Reason.DeadlineExceeded));
      assert.ok(performance.now() - started < 150, 'rejected at once');
      assert.equal(pool.stats().busy, 1, 'the worker is busy until it has stopped');
      await pool.run('echo', {}, { priority: 0, signal: never });
      assert.ok(performance.now() - started < 1000, 'the worker stopped sleeping when told');

      // A job that does not check its signal holds the worker until it ends.
      const stubborn = new AbortController();
      const held = pool.run(
        'sleep',
        { ms: 400, ignoreAbort: true },
        { priority: 0, signal: stubborn.signal },
      );
      await until(() => pool.stats().busy === 1, 'the stubborn job to start');
      const abortedAt = performance.now();
      stubborn.abort(new VoiceError(Reason.Cancelled, 'cancelled'));
      await assert.rejects(held, isVoiceError(Reason.Cancelled));
      await pool.run('echo', {}, { priority: 0, signal: never });
      assert.ok(performance.now() - abortedAt > 300, 'the next job waited for the worker to finish');
    } finally {
      await pool.close();
    }
  });

  test('closing lets a running job finish before its worker exits, and terminates one that does not end', async () => {
    // Terminating a thread mid-inference can abort the process (onnxruntime), so close asks first.
    const pool = hookPool();
    await pool.start();
    const finishing = pool.run('sleep', { ms: 300, ignoreAbort: true }, { priority: 0, signal: never });
    finishing.catch(() => {});
    await until(() => pool.stats().busy === 1, 'the job to start');
    let at = performance.now();
    await pool.close();
    assert.ok(performance.now() - at >= 250, 'close waited for the running job');
    await assert.rejects(finishing, isVoiceError(Reason.Draining));

    const stuck = hookPool();
    await stuck.start();
    const endless = stuck.run('sleep', { ms: 600_000, ignoreAbort: true }, { priority: 0, signal: never });
    endless.catch(() => {});
    await until(() => stuck.stats().busy === 1, 'the endless job to start');
    at = performance.now();
    await stuck.close();
    const waited = performance.now() - at;
    assert.ok(waited >= 1900 && waited < 10_000, `terminated after the grace (${waited.toFixed(0)} ms)`);
  });

  test('errors thrown in the worker arrive as VoiceErrors; unexpected ones are generic and logged', async () => {
    const logs = captureLogs();
    const pool = hookPool({ logger: pino(logs.stream) });
    await pool.start();
    try {
      await assert.rejects(
        pool.run(
          'fail',
          {
            reason: Reason.LimitExceeded,
            message: 'text: too long',
            retryAfterMs: 1234,
            info: { limit: 'service.max_text_chars' },
          },
          { priority: 0, signal: never },
        ),
        (error: unknown) => {
          isVoiceError(Reason.LimitExceeded, Code.ResourceExhausted)(error);
          assert.equal((error as VoiceError).rawMessage, 'text: too long');
          assert.equal((error as VoiceError).retryAfterMs, 1234);
          assert.deepEqual((error as VoiceError).info, { limit: 'service.max_text_chars' });
          return true;
        },
      );
      await assert.rejects(
        pool.run('fail', { message: 'secret /path/in/worker' }, { priority: 0, signal: never }),
        (error: unknown) => {
          isVoiceError(Reason.Internal, Code.Internal)(error);
          assert.equal((error as VoiceError).rawMessage, 'internal error');
          return true;
        },
      );
      await until(() => logs.text().includes('secret /path/in/worker'), 'the stack in the log');
      assert.ok(logs.text().includes('engine-worker.js'), 'the log holds the worker stack');
      await assert.rejects(
        pool.run('unknown-kind' as 'echo', {}, { priority: 0, signal: never }),
        isVoiceError(Reason.EngineUnavailable),
      );
    } finally {
      await pool.close();
    }
  });

  test('worker → main results are transferred too', async () => {
    const pool = hookPool();
    await pool.start();
    try {
      const sent = new Float32Array(1000).fill(0.5);
      const back = await pool.run(
        'echo',
        { buffer: sent.buffer },
        { priority: 0, signal: never, transfer: [sent.buffer] },
      );
      assert.equal(sent.byteLength, 0);
      assert.deepEqual(new Float32Array(back.buffer ?? new ArrayBuffer(0)), new Float32Array(1000).fill(0.5));
      assert.deepEqual(await pool.run('lastTransfer', null, { priority: 0, signal: never }), [0]);
    } finally {
      await pool.close();
    }
  });

  for (const mode of ['throw', 'exit'] as const) {
    test(`a worker that dies (${mode}) fails only its job with WORKER_CRASHED and is replaced`, async () => {
      const metrics = createMetrics();
      const logs = captureLogs();
      const pool = hookPool({ size: 2, metrics, logger: pino(logs.stream) });
      await pool.start();
      try {
        const other = pool.run('sleep', { ms: 300 }, { priority: 0, signal: never });
        await until(() => pool.stats().busy === 1, 'the first worker to be busy');
        const crash = pool.run('crash', { mode }, { priority: 0, signal: never });
        const queued = pool.run('echo', { tag: 'queued' }, { priority: 1, signal: never });
        await assert.rejects(crash, (error: unknown) => {
          isVoiceError(Reason.WorkerCrashed, Code.Unavailable, 'may be retried')(error);
          assert.ok(((error as VoiceError).retryAfterMs ?? 0) > 0);
          return true;
        });
        assert.equal(await other, 300, 'the other worker’s job is untouched');
        assert.equal((await queued).tag, 'queued');
        await until(() => pool.stats().ready === 2, 'the replacement to be ready');
        assert.equal(pool.stats().restarts, 1);
        assert.equal((await pool.run('echo', { tag: 'next' }, { priority: 0, signal: never })).tag, 'next');
        assert.equal(await gauge(metrics.busyWorkers), 0);
        assert.equal(await gauge(metrics.queueDepth), 0);
        assert.ok(logs.text().includes('model worker died'));
      } finally {
        await pool.close();
      }
    });
  }

  test('a worker out of memory (resourceLimits) fails its job; the replacement serves the queue', async () => {
    const logs = captureLogs();
    const pool = hookPool({
      resourceLimits: { maxOldGenerationSizeMb: 24, maxYoungGenerationSizeMb: 4 },
      logger: pino(logs.stream),
    });
    await pool.start();
    try {
      const crash = pool.run('crash', { mode: 'oom' }, { priority: 0, signal: never });
      const queued = pool.run('echo', { tag: 'after' }, { priority: 0, signal: never });
      await assert.rejects(crash, isVoiceError(Reason.WorkerCrashed, Code.Unavailable));
      assert.equal((await queued).tag, 'after');
      assert.equal(pool.stats().restarts, 1);
      await until(
        () => logs.text().includes('ERR_WORKER_OUT_OF_MEMORY'),
        'the out-of-memory error in the log',
      );
    } finally {
      await pool.close();
    }
  });

  test('a reply that cannot be deserialized fails its job with WORKER_CRASHED; the worker is replaced', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'worker-pool-unreadable-'));
    const script = join(dir, 'unreadable-reply-worker.mjs');
    // A FileHandle whose transfer hook names a module that does not exist: it serializes in the
    // worker, and deserializing it in the main thread fails ('messageerror'). Node's internal hooks
    // are found by their symbols' descriptions.
    await writeFile(
      script,
      `import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parentPort } from 'node:worker_threads';
parentPort.postMessage({ type: 'ready', report: {}, loadSeconds: 0 });
parentPort.on('message', async (message) => {
  if (message.type !== 'job') return;
  if (message.kind !== 'unreadable') {
    parentPort.postMessage({ type: 'result', id: message.id, result: message.payload, seconds: 0 });
    return;
  }
  const handle = await open(fileURLToPath(import.meta.url));
  const symbols = [];
  for (let o = handle; o !== null; o = Object.getPrototypeOf(o)) symbols.push(...Object.getOwnPropertySymbols(o));
  const hook = (name) => symbols.find((s) => s.description === name);
  const transfer = hook('messaging_transfer_symbol');
  const transferList = hook('messaging_transfer_list_symbol');
  if (transfer === undefined || transferList === undefined) {
    parentPort.postMessage({ type: 'result', id: message.id, result: 'unsupported', seconds: 0 });
    return;
  }
  handle[transferList] = () => [];
  handle[transfer] = () => ({ data: null, deserializeInfo: 'internal/no-such-module:Nothing' });
  parentPort.postMessage({ type: 'result', id: message.id, result: handle, seconds: 0 }, [handle]);
});
`,
    );
    const logs = captureLogs();
    const metrics = createMetrics();
    const pool = hookPool({ script: pathToFileURL(script), logger: pino(logs.stream), metrics });
    await pool.start();
    try {
      const job = pool.run('unreadable' as 'echo', {}, { priority: 0, signal: never });
      const queued = pool.run('echo', { tag: 'queued' }, { priority: 0, signal: never });
      queued.catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        job.then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        ),
        new Promise<{ hung: true }>((resolve) => {
          timer = setTimeout(() => resolve({ hung: true }), 5000);
        }),
      ]);
      clearTimeout(timer);
      if ('result' in outcome && (outcome.result as unknown) === 'unsupported') {
        t.skip('this Node version has no transfer hooks to forge an unreadable message with');
        return;
      }
      assert.ok(!('hung' in outcome), 'the job settles instead of holding the worker for good');
      assert.ok('error' in outcome, 'the job fails');
      isVoiceError(Reason.WorkerCrashed, Code.Unavailable, 'could not be read')(outcome.error);
      assert.ok(((outcome.error as VoiceError).retryAfterMs ?? 0) > 0);
      assert.equal((await queued).tag, 'queued', 'the replacement serves the queue');
      assert.equal(pool.stats().restarts, 1);
      assert.equal(pool.stats().ready, 1);
      assert.equal(await gauge(metrics.busyWorkers), 0);
      assert.ok(logs.text().includes('could not be deserialized'), logs.text());
      assert.ok(logs.text().includes('no-such-module'), 'the cause is in the log');
    } finally {
      await pool.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('close is idempotent: every call resolves once the workers have exited', async () => {
    const pool = hookPool({ size: 2 });
    await pool.start();
    const first = pool.close();
    const second = pool.close();
    assert.equal(first, second);
    await second;
    assert.equal(pool.stats().workers, 0);
  });

  test('start rejects clearly when a worker cannot load; the pool keeps retrying and refuses jobs at once meanwhile', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'worker-pool-bad-'));
    const script = join(dir, 'bad-worker.mjs');
    await writeFile(script, "throw new Error('model file broken.onnx is corrupt');\n");
    const pool = hookPool({ name: 'inference', size: 2, script: pathToFileURL(script) });
    try {
      await assert.rejects(
        pool.start(),
        isVoiceError(Reason.EngineUnavailable, Code.Unavailable, 'broken.onnx is corrupt'),
      );
      const status = pool.status();
      assert.equal(status.ready, 0);
      assert.ok(status.loadFailures >= 3, JSON.stringify(status));
      assert.match(status.reason ?? '', /broken\.onnx is corrupt/);
      await assert.rejects(pool.run('echo', {}, { priority: 0, signal: never }), (error: unknown) => {
        isVoiceError(Reason.EngineUnavailable, Code.Unavailable, 'keep failing while loading')(error);
        assert.ok(((error as VoiceError).retryAfterMs ?? 0) > 0, 'names when to retry');
        return true;
      });
    } finally {
      await pool.close();
      await rm(dir, { recursive: true, force: true });
    }
    assert.equal(pool.stats().workers, 0);
  });

  test('close rejects pending jobs with UNAVAILABLE and refuses new ones', async () => {
    const pool = hookPool();
    await pool.start();
    const running = pool.run('sleep', { ms: 5000 }, { priority: 0, signal: never });
    await until(() => pool.stats().busy === 1, 'the job to start');
    const waiting = pool.run('echo', {}, { priority: 0, signal: never });
    const refused = Promise.all([
      assert.rejects(running, isVoiceError(Reason.Draining, Code.Unavailable)),
      assert.rejects(waiting, isVoiceError(Reason.Draining, Code.Unavailable)),
    ]);
    await pool.close();
    await refused;
    await assert.rejects(pool.run('echo', {}, { priority: 0, signal: never }), isVoiceError(Reason.Draining));
  });

  test('measures: round trip of an empty job', async (t) => {
    const pool = hookPool();
    await pool.start();
    try {
      for (let i = 0; i < 50; i++) await pool.run('echo', {}, { priority: 0, signal: never });
      const times: number[] = [];
      for (let i = 0; i < 500; i++) {
        const started = performance.now();
        await pool.run('echo', {}, { priority: 0, signal: never });
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      const median = times[times.length >> 1] ?? 0;
      const p99 = times[Math.floor(times.length * 0.99)] ?? 0;
      t.diagnostic(
        `empty job round trip: median ${(median * 1000).toFixed(0)} µs, p99 ${(p99 * 1000).toFixed(0)} µs`,
      );
      assert.ok(median < 5, `median ${median} ms`);
    } finally {
      await pool.close();
    }
  });
});

describe('worker pool start-up', () => {
  test('a worker that dies while loading is retried, and the pool starts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'voice-pool-start-'));
    const marker = join(dir, 'crashed');
    const pool = hookPool({
      workerData: { testHooks: true, crashOnceWhileLoading: marker } satisfies EngineWorkerData,
    });
    try {
      await pool.start();
      assert.equal(
        await readFile(marker, 'utf8'),
        'crashed once while loading\n',
        'the first start did fail',
      );
      assert.equal(pool.stats().restarts, 1);
      assert.equal(
        await pool
          .run('echo', { tag: 'alive' }, { priority: 0, signal: new AbortController().signal })
          .then((r) => r.tag),
        'alive',
      );
    } finally {
      await pool.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
