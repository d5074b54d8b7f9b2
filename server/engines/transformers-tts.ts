/**
 * Neural text-to-speech with VITS models (e.g. the MMS-TTS exports) through @huggingface/transformers'
 * `text-to-speech` pipeline, running on onnxruntime-node in this thread.
 *
 * Models live in `<cacheDir>/<model id>/` (config.json, tokenizer.json, tokenizer_config.json,
 * onnx/model.onnx). A model that is not there is reported by `load()` and its voice is not offered;
 * the server starts without it.
 *
 * Speed: transformers.js passes no speed option to VITS (only Supertonic takes one), and the
 * exported graphs have `speaking_rate` baked in, so this engine returns audio at the model's own
 * pace (`nativeSpeed` is false) and the model worker time-stretches it by `speed` (server/engines/time-stretch.ts).
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { env, pipeline, Tensor } from '@huggingface/transformers';
import { Reason, throwIfAborted, VoiceError } from '../errors.js';
import type { PcmAudio, SpeechSynthesizer, SynthesizeOptions, VoiceInfo } from './types.js';

export interface TransformersModelSpec {
  /** Hub-style id, also the folder under `cacheDir`, e.g. `Xenova/mms-tts-eng`. */
  readonly id: string;
  readonly language: string;
  /** Speaker index of a multi-speaker model (config `num_speakers` > 1, graph input `speaker_id`). */
  readonly speaker?: string;
}

export interface TransformersSynthesizerOptions {
  /** Folder holding the models; becomes transformers' `env.localModelPath` and `env.cacheDir`. */
  readonly cacheDir: string;
  /** Whether transformers may download models that are not in `cacheDir`. */
  readonly allowRemote: boolean;
  readonly models: readonly TransformersModelSpec[];
  /** onnxruntime intra-op threads per model session. */
  readonly threads: number;
}

/** A configured model that could not be loaded; its voice is not offered. */
export interface UnavailableModel {
  readonly model: string;
  /** The folder the model was expected in. */
  readonly folder: string;
  readonly reason: string;
}

export interface TransformersLoadReport {
  readonly voices: readonly VoiceInfo[];
  readonly unavailable: readonly UnavailableModel[];
}

export interface TransformersSynthesizer extends SpeechSynthesizer {
  /** Loads every configured model once; later calls return the same report. Never rejects for a missing model. */
  load(): Promise<TransformersLoadReport>;
  /** False: `synthesize` ignores `speed`; the model worker time-stretches the result. */
  readonly nativeSpeed: false;
}

/** The files transformers reads for a VITS model with dtype fp32. */
export const vitsModelFiles = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'onnx/model.onnx',
] as const;

/** The slice of transformers' TextToAudioPipeline this engine uses; its published type is too loose to help. */
interface VitsPipeline {
  (text: string): Promise<{ audio: Float32Array; sampling_rate: number }>;
  tokenizer(text: string, options: { padding: boolean; truncation: boolean }): Record<string, Tensor>;
  model: {
    (inputs: Record<string, Tensor>): Promise<{ waveform: Tensor }>;
    config: { sampling_rate?: number; num_speakers?: number };
    sessions: Record<string, { inputNames: readonly string[] }>;
  };
}

interface LoadedVoice {
  readonly info: VoiceInfo;
  readonly pipe: VitsPipeline;
  /** Set for multi-speaker models, which the pipeline cannot drive: the model is called directly. */
  readonly speakerId: bigint | undefined;
}

export function createTransformersSynthesizer(
  options: TransformersSynthesizerOptions,
): TransformersSynthesizer {
  const loaded = new Map<string, LoadedVoice>();
  let loading: Promise<TransformersLoadReport> | undefined;

  async function loadAll(): Promise<TransformersLoadReport> {
    // transformers' env is process-wide: every engine using the library shares these settings.
    env.localModelPath = options.cacheDir;
    env.cacheDir = options.cacheDir;
    env.allowLocalModels = true;
    env.allowRemoteModels = options.allowRemote;

    const pipes = new Map<string, Promise<VitsPipeline>>();
    const unavailable: UnavailableModel[] = [];
    // One at a time: loading is CPU-heavy and the server is not serving yet anyway.
    for (const spec of options.models) {
      const folder = join(options.cacheDir, ...spec.id.split('/'));
      try {
        if (!options.allowRemote) await requireFiles(folder);
        let pipe = pipes.get(spec.id);
        if (pipe === undefined) {
          pipe = openPipeline(spec.id, options.threads);
          pipes.set(spec.id, pipe);
        }
        const voice = describeVoice(spec, await pipe);
        loaded.set(voice.info.id, voice);
      } catch (error) {
        unavailable.push({
          model: spec.id,
          folder,
          reason: error instanceof Error ? error.message : String(error),
        });
      }
    }
    return { voices: [...loaded.values()].map((voice) => voice.info), unavailable };
  }

  function voiceOf(id: string): LoadedVoice {
    const voice = loaded.get(id);
    if (voice !== undefined) return voice;
    if (loading === undefined) {
      throw new VoiceError(Reason.EngineUnavailable, 'VITS voices are not loaded yet');
    }
    const valid = [...loaded.keys()];
    throw new VoiceError(
      Reason.UnknownResource,
      `voice: unknown VITS voice "${id}"; valid voices: ${valid.length > 0 ? valid.join(', ') : '(none loaded)'}`,
    );
  }

  return {
    nativeSpeed: false,

    load() {
      loading ??= loadAll();
      return loading;
    },

    voices() {
      return [...loaded.values()].map((voice) => voice.info);
    },

    async synthesize(text: string, { voice: voiceId, signal }: SynthesizeOptions): Promise<PcmAudio> {
      throwIfAborted(signal);
      const voice = voiceOf(voiceId);
      const samples = await run(voice, text);
      // onnxruntime cannot stop a running session; a call aborted meanwhile drops the result.
      throwIfAborted(signal);
      return { samples, sampleRate: voice.info.sampleRate };
    },
  };
}

async function requireFiles(folder: string): Promise<void> {
  const missing: string[] = [];
  for (const file of vitsModelFiles) {
    try {
      await access(join(folder, file));
    } catch {
      missing.push(file);
    }
  }
  if (missing.length > 0) {
    throw new Error(
      `model folder ${folder} lacks ${missing.join(', ')}; install it with 'voice models pull'`,
    );
  }
}

async function openPipeline(id: string, threads: number): Promise<VitsPipeline> {
  const pipe = await pipeline('text-to-speech', id, {
    local_files_only: !env.allowRemoteModels,
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
  });
  return pipe as unknown as VitsPipeline;
}

function describeVoice(spec: TransformersModelSpec, pipe: VitsPipeline): LoadedVoice {
  const { sampling_rate: sampleRate, num_speakers: numSpeakers = 1 } = pipe.model.config;
  if (typeof sampleRate !== 'number' || !(sampleRate > 0)) {
    throw new Error(`config.json of ${spec.id} has no sampling_rate`);
  }
  const speaker = spec.speaker ?? '';
  let speakerId: bigint | undefined;
  if (speaker !== '') {
    const index = Number(speaker);
    const takesSpeaker = pipe.model.sessions.model?.inputNames.includes('speaker_id') ?? false;
    if (!Number.isInteger(index) || index < 0 || index >= numSpeakers || !takesSpeaker) {
      throw new Error(
        `speaker "${speaker}" is not a speaker of ${spec.id}: it has ${numSpeakers} speaker(s)` +
          (takesSpeaker ? '' : ' and its graph takes no speaker_id'),
      );
    }
    speakerId = BigInt(index);
  }
  const id = speaker === '' ? `vits:${spec.id}` : `vits:${spec.id}:${speaker}`;
  return {
    info: {
      id,
      name: speaker === '' ? spec.id : `${spec.id} speaker ${speaker}`,
      language: spec.language,
      engine: 'transformers',
      model: spec.id,
      speaker,
      sampleRate,
    },
    pipe,
    speakerId,
  };
}

async function run(voice: LoadedVoice, text: string): Promise<Float32Array> {
  if (voice.speakerId === undefined) return (await voice.pipe(text)).audio;
  // What TextToAudioPipeline does for VITS, plus the speaker the pipeline has no way to pass.
  const inputs = voice.pipe.tokenizer(text, { padding: true, truncation: true });
  const speakerId = new Tensor('int64', BigInt64Array.of(voice.speakerId), [1]);
  const { waveform } = await voice.pipe.model({ ...inputs, speaker_id: speakerId });
  return waveform.data as Float32Array;
}
