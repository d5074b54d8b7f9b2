/**
 * (a) The library's pipeline called directly: the stream is first cut into utterances exactly as
 * the service cuts it (Silero VAD and the utterance segmenter, in this thread), then two worker
 * threads, each with its own `automatic-speech-recognition` pipeline of @huggingface/transformers
 * and one onnxruntime thread, recognise them as fast as they can, with no project code in the
 * recognition path (stt-direct-worker.ts).
 */
import { Worker } from 'node:worker_threads';
import { createSileroVad, type SileroVersion } from '../server/engines/silero-vad.js';
import type { VadSession } from '../server/engines/types.js';
import { detectSpeech } from '../server/pipeline/speech-detector.js';
import { createUtteranceSegmenter, type SegmenterConfig } from '../server/pipeline/utterance-segmenter.js';
import { SAMPLE_RATE, type StreamAudio } from './stt-audio.js';
import type { DirectWorkerData, DirectWorkerReply, DirectWorkerRequest } from './stt-direct-worker.js';
import { type BenchModel, pipelineOptions } from './stt-models.js';
import { memoryOf, startLoadMeter } from './stt-stats.js';

export interface Slice {
  readonly audio: Float32Array;
  readonly startMs: number;
  readonly endMs: number;
}

export interface Segmentation {
  readonly slices: Slice[];
  /** Wall time spent in VAD calls, in seconds. */
  readonly vadSeconds: number;
  /** CPU time of this process over the whole segmentation (VAD, segmenter, copies), in seconds. */
  readonly cpuSeconds: number;
  readonly vadCalls: number;
}

/** Cuts a stream into utterances exactly as the service does, with the VAD in this thread. */
export async function segmentStream(
  stream: StreamAudio,
  options: { version: SileroVersion; segmenter: SegmenterConfig; chunkSamples: number },
): Promise<Segmentation> {
  const vad = await createSileroVad({ version: options.version, threads: 1 });
  let vadSeconds = 0;
  let vadCalls = 0;
  const inner = vad.openSession();
  const session: VadSession = {
    frameSamples: inner.frameSamples,
    async probabilities(frames, callOptions) {
      const started = performance.now();
      try {
        return await inner.probabilities(frames, callOptions);
      } finally {
        vadSeconds += (performance.now() - started) / 1000;
        vadCalls += 1;
      }
    },
    close: () => inner.close(),
  };
  async function* chunks(): AsyncGenerator<Float32Array> {
    for (let offset = 0; offset < stream.samples.length; offset += options.chunkSamples) {
      yield stream.samples.slice(offset, offset + options.chunkSamples);
    }
  }
  const slices: Slice[] = [];
  const signal = new AbortController().signal;
  const cpuBefore = process.cpuUsage();
  for await (const event of detectSpeech(
    chunks(),
    session,
    createUtteranceSegmenter(options.segmenter),
    signal,
  )) {
    if (event.type === 'utterance') {
      slices.push({ audio: event.audio.slice(), startMs: event.startMs, endMs: event.endMs });
    }
  }
  const cpuSeconds = cpuSecondsSince(cpuBefore);
  session.close();
  await vad.release();
  return { slices, vadSeconds, cpuSeconds, vadCalls };
}

export interface LibraryRun {
  readonly workers: number;
  /** Timed calls (every slice, `rounds` times), after one untimed warm-up round per worker. */
  readonly calls: number;
  readonly rounds: number;
  /** Seconds of utterance audio recognised. */
  readonly audioSeconds: number;
  readonly wallSeconds: number;
  /** CPU time of this process (every thread) during the timed calls. */
  readonly cpuSeconds: number;
  /** Per call, inside the worker, in ms. */
  readonly latenciesMs: number[];
  /** Cores kept busy by other processes during the timed calls. */
  readonly otherLoadCores: number;
  /** Pipeline load time per worker, ms. */
  readonly loadMs: number[];
  /** RSS of this process with the pipelines loaded. */
  readonly rssMiB: number;
  readonly text: string;
}

/**
 * Recognises the slices on `workers` threads, each pulling the next slice when it is free, in
 * whole rounds until at least `minSeconds` have passed.
 */
export async function runLibrary(
  model: BenchModel,
  slices: readonly Slice[],
  options: { workers: number; minSeconds: number; maxRounds: number },
): Promise<LibraryRun> {
  const lanes = await Promise.all(
    Array.from({ length: options.workers }, () =>
      startLane({ cacheDir: model.cacheDir, modelId: model.modelId }),
    ),
  );
  try {
    const call = (lane: Lane, slice: Slice) =>
      lane.recognize(slice.audio.slice(), pipelineOptions(model.family, slice.audio.length));
    // Warm-up: one second of silence and one utterance per worker, untimed.
    const warm = slices[0];
    await Promise.all(
      lanes.map(async (lane) => {
        await lane.recognize(new Float32Array(SAMPLE_RATE), pipelineOptions(model.family, SAMPLE_RATE));
        if (warm !== undefined) await call(lane, warm);
      }),
    );
    const latenciesMs: number[] = [];
    let text = '';
    let rounds = 0;
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    const otherLoad = startLoadMeter(() => [process.pid]);
    while (rounds < options.maxRounds) {
      let next = 0;
      await Promise.all(
        lanes.map(async (lane) => {
          for (let slice = slices[next++]; slice !== undefined; slice = slices[next++]) {
            const done = await call(lane, slice);
            latenciesMs.push(done.ms);
            text = done.text;
          }
        }),
      );
      rounds += 1;
      if ((performance.now() - started) / 1000 >= options.minSeconds) break;
    }
    const wallSeconds = (performance.now() - started) / 1000;
    const cpuSeconds = cpuSecondsSince(cpuBefore);
    const otherLoadCores = otherLoad();
    const roundSeconds = slices.reduce((total, slice) => total + slice.audio.length / SAMPLE_RATE, 0);
    return {
      workers: options.workers,
      calls: latenciesMs.length,
      rounds,
      audioSeconds: roundSeconds * rounds,
      wallSeconds,
      cpuSeconds,
      latenciesMs,
      otherLoadCores,
      loadMs: lanes.map((lane) => lane.loadMs),
      rssMiB: memoryOf(process.pid).rssMiB,
      text: text.trim(),
    };
  } finally {
    await Promise.all(lanes.map((lane) => lane.stop()));
  }
}

interface Lane {
  readonly loadMs: number;
  recognize(audio: Float32Array, options: Record<string, unknown>): Promise<{ ms: number; text: string }>;
  stop(): Promise<void>;
}

/** A worker thread with its pipeline loaded; one call at a time. */
async function startLane(data: DirectWorkerData): Promise<Lane> {
  const worker = new Worker(new URL('./stt-direct-worker.js', import.meta.url), { workerData: data });
  let waiting: { resolve(reply: DirectWorkerReply): void; reject(error: Error): void } | undefined;
  const next = () =>
    new Promise<DirectWorkerReply>((resolve, reject) => {
      waiting = { resolve, reject };
    });
  worker.on('message', (reply: DirectWorkerReply) => waiting?.resolve(reply));
  worker.on('error', (error) => waiting?.reject(error));
  worker.on('exit', (code) => waiting?.reject(new Error(`the library worker exited with ${code}`)));
  const ready = await next();
  if (ready.type !== 'ready') {
    await worker.terminate();
    throw new Error(
      `the library pipeline did not load: ${ready.type === 'failed' ? ready.message : ready.type}`,
    );
  }
  return {
    loadMs: ready.loadMs,
    async recognize(audio, options) {
      const reply = next();
      worker.postMessage({ type: 'recognize', audio, options } satisfies DirectWorkerRequest, [
        audio.buffer as ArrayBuffer,
      ]);
      const done = await reply;
      if (done.type !== 'done') {
        throw new Error(`a library call failed: ${done.type === 'failed' ? done.message : done.type}`);
      }
      return done;
    },
    async stop() {
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ type: 'stop' } satisfies DirectWorkerRequest);
      const timer = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function cpuSecondsSince(before: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1e6;
}
