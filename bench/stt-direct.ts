/**
 * (a) The library's pipeline called directly in this process: Silero VAD and the utterance
 * segmenter cut a stream into utterances, and the Whisper recognizer transcribes them, with no
 * workers, no gRPC and no queue in between.
 */
import { env, pipeline } from '@huggingface/transformers';
import { createSileroVad, type SileroVersion } from '../server/engines/silero-vad.js';
import { createTransformersRecognizer } from '../server/engines/transformers-asr.js';
import type { SpeechRecognizer, VadSession } from '../server/engines/types.js';
import { detectSpeech } from '../server/pipeline/speech-detector.js';
import { createUtteranceSegmenter, type SegmenterConfig } from '../server/pipeline/utterance-segmenter.js';
import { SAMPLE_RATE, type StreamAudio } from './stt-audio.js';
import { startLoadMeter } from './stt-stats.js';

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

export interface ModelRef {
  readonly cacheDir: string;
  readonly modelId: string;
}

/** A warmed-up in-process recognizer with `threads` onnxruntime intra-op threads. */
export async function loadRecognizer(model: ModelRef, threads: number): Promise<SpeechRecognizer> {
  const recognizer = createTransformersRecognizer({
    cacheDir: model.cacheDir,
    allowRemote: false,
    defaultModel: model.modelId,
    dtype: 'fp32',
    allowedModels: [],
    device: 'cpu',
    threads,
  });
  await recognizer.warmUp();
  return recognizer;
}

export interface DirectRun {
  /** Per call, in ms, in the order the calls finished. */
  readonly latenciesMs: number[];
  readonly wallSeconds: number;
  /** CPU time of this process (every thread) during the run, in seconds. */
  readonly cpuSeconds: number;
  /** Cores kept busy by other processes during the run. */
  readonly otherLoadCores: number;
  readonly audioSeconds: number;
  readonly calls: number;
}

/** Recognizes every slice `rounds` times, `concurrency` calls at a time, and times each call. */
export async function runDirect(
  recognizer: SpeechRecognizer,
  slices: readonly Slice[],
  options: { concurrency: number; rounds: number },
): Promise<DirectRun> {
  const work = Array.from({ length: options.rounds }, () => slices).flat();
  const latenciesMs: number[] = [];
  let next = 0;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const otherLoad = startLoadMeter(() => [process.pid]);
  const lane = async () => {
    for (let item = work[next++]; item !== undefined; item = work[next++]) {
      const callStarted = performance.now();
      await recognizer.recognize(item.audio.slice(), {
        language: 'en',
        timestamps: 'none',
        priority: 'final',
        model: undefined,
        signal: new AbortController().signal,
      });
      latenciesMs.push(performance.now() - callStarted);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, lane));
  const wallSeconds = (performance.now() - started) / 1000;
  const cpuSeconds = cpuSecondsSince(cpuBefore);
  const audioSeconds = work.reduce((total, slice) => total + slice.audio.length / SAMPLE_RATE, 0);
  return {
    latenciesMs,
    wallSeconds,
    cpuSeconds,
    otherLoadCores: otherLoad(),
    audioSeconds,
    calls: work.length,
  };
}

function cpuSecondsSince(before: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1e6;
}

export interface CallBreakdown {
  readonly totalMs: number;
  /** Log-mel features of the 30 s window, computed in JavaScript on the calling thread. */
  readonly featuresMs: number;
  readonly encoderMs: number;
  readonly decoderMs: number;
  readonly decoderSteps: number;
}

interface Timed {
  run?(...args: unknown[]): Promise<unknown>;
  _call?(...args: unknown[]): Promise<unknown>;
}

interface BreakdownPipeline {
  (audio: Float32Array, options: Record<string, unknown>): Promise<unknown>;
  /** transformers' Callable: calling it calls its `_call`, which can be replaced per instance. */
  processor: Timed;
  model: { sessions: Record<string, Timed> };
  dispose(): Promise<void>;
}

/**
 * Where one call's time goes: the same transformers pipeline the recognizer uses, with its feature
 * extractor and ONNX sessions timed inside the call.
 */
export async function breakdownCalls(
  model: ModelRef,
  slices: readonly Slice[],
  threads: number,
): Promise<CallBreakdown[]> {
  env.localModelPath = model.cacheDir;
  env.cacheDir = model.cacheDir;
  env.allowLocalModels = true;
  env.allowRemoteModels = false;
  const pipe = (await pipeline('automatic-speech-recognition', model.modelId, {
    local_files_only: true,
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
  })) as unknown as BreakdownPipeline;
  const spent = new Map<string, { ms: number; runs: number }>();
  const time = (name: string, target: Timed, method: 'run' | '_call') => {
    const original = target[method]?.bind(target);
    if (original === undefined) throw new Error(`transformers changed: ${name} has no ${method}()`);
    target[method] = async (...args: unknown[]) => {
      const started = performance.now();
      try {
        return await original(...args);
      } finally {
        const entry = spent.get(name) ?? { ms: 0, runs: 0 };
        spent.set(name, { ms: entry.ms + performance.now() - started, runs: entry.runs + 1 });
      }
    };
  };
  time('features', pipe.processor, '_call');
  for (const [name, session] of Object.entries(pipe.model.sessions)) time(name, session, 'run');
  const options = { language: 'en', task: 'transcribe' };
  await pipe(new Float32Array(SAMPLE_RATE), options);
  const results: CallBreakdown[] = [];
  for (const slice of slices) {
    spent.clear();
    const started = performance.now();
    await pipe(slice.audio, options);
    const totalMs = performance.now() - started;
    const decoder = spent.get('decoder_model_merged') ?? { ms: 0, runs: 0 };
    const encoderMs = [...spent.entries()]
      .filter(([name]) => name !== 'decoder_model_merged' && name !== 'features')
      .reduce((total, [, entry]) => total + entry.ms, 0);
    results.push({
      totalMs,
      featuresMs: spent.get('features')?.ms ?? Number.NaN,
      encoderMs,
      decoderMs: decoder.ms,
      decoderSteps: decoder.runs,
    });
  }
  await pipe.dispose();
  return results;
}
