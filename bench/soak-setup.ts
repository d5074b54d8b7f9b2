/**
 * What the soak and chaos runs set up: a generated recognition model, eSpeak speech laid out as
 * streams of utterances with pauses, and the server (bench/chaos-server.ts) in a child process on
 * 127.0.0.1 with ephemeral ports.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../server/config.js';
import { generateMoonshineModel } from '../test/fixtures/moonshine-model.js';
import { createServerControl } from './chaos-control.js';
import type { LoadPlan } from './soak-plan.js';
import type { Served } from './soak-sampler.js';
import type { TurnOptions } from './soak-stream.js';
import { buildStream, type StreamAudio, speakSentences } from './stt-audio.js';
import { generateModel } from './stt-models.js';
import { benchConfig, cleanEnv, startService } from './stt-service.js';

export interface Setup {
  readonly modelId: string;
  /** "moonshine-tiny (6+6 layers, hidden 288, 8 heads; random weights)". */
  readonly modelLabel: string;
  readonly cacheDir: string;
  /** One clip per stream loop (each starts at another sentence). */
  readonly audio: readonly StreamAudio[];
  /** The VAD's min_silence_ms plus a margin: the pause after an utterance that makes its final owed. */
  readonly owedAfterMs: number;
  cleanup(): void;
}

const OWED_MARGIN_MS = 300;

export async function prepare(plan: LoadPlan, log: (line: string) => void): Promise<Setup> {
  const cacheDir = mkdtempSync(join(tmpdir(), 'voice-soak-models-'));
  const started = performance.now();
  let modelId: string;
  let modelLabel: string;
  if (plan.model === 'minimal') {
    const model = await generateMoonshineModel({ root: cacheDir, preset: 'minimal' });
    modelId = model.modelId;
    modelLabel = 'the minimal test Moonshine (random weights, tiny graphs)';
  } else {
    const model = await generateModel(cacheDir, plan.model);
    modelId = model.modelId;
    modelLabel = `${plan.model} (${model.dims}; random weights${model.realDims ? '' : ', NOT the real dimensions'})`;
  }
  log(`generated ${modelLabel} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const sentences = speakSentences();
  const audio = Array.from({ length: Math.min(plan.streams, 8) }, (_, stream) =>
    buildStream(sentences, stream, plan.utterances),
  );
  const minSilenceMs = loadConfig({ env: {} }).models.vad.min_silence_ms;
  return {
    modelId,
    modelLabel,
    cacheDir,
    audio,
    owedAfterMs: minSilenceMs + OWED_MARGIN_MS,
    cleanup: () => rmSync(cacheDir, { recursive: true, force: true }),
  };
}

export interface ServerOptions {
  /** The workers' test-only job kinds: crashes (chaos) and their memory figures (soak --worker-memory). */
  readonly testHooks?: boolean;
  /** Bind this gRPC port (a restart after a drain, so that clients find the server where it was). */
  readonly grpcPort?: number;
  readonly drainGraceSeconds?: number;
}

/** Starts bench/chaos-server.ts with the bench's config for the generated model. */
export async function startServer(
  setup: Setup,
  plan: LoadPlan,
  options: ServerOptions = {},
): Promise<Served> {
  const sections = benchConfig({
    cacheDir: setup.cacheDir,
    modelId: setup.modelId,
    workers: plan.workers,
    maxFinalDelayMs: plan.maxFinalDelayMs,
  });
  const service = sections.service as Record<string, unknown>;
  if (plan.ttsCacheMb !== undefined) {
    (sections.performance as Record<string, unknown>).tts_cache_mb = plan.ttsCacheMb;
  }
  if (options.grpcPort !== undefined) service.port = options.grpcPort;
  if (options.drainGraceSeconds !== undefined) service.drain_grace_seconds = options.drainGraceSeconds;
  const running = await startService(sections, cleanEnv(), {
    script: fileURLToPath(new URL('./chaos-server.js', import.meta.url)),
    execArgv: plan.execArgv,
    args: options.testHooks === true ? ['--test-hooks'] : [],
    ipc: true,
  });
  return { service: running, control: createServerControl(running) };
}

/** The load both runs put on the server: the plan's streams and pacing, the setup's model and audio. */
export function loadOptions(setup: Setup, plan: LoadPlan): TurnOptions & { readonly streams: number } {
  return {
    streams: plan.streams,
    model: setup.modelId,
    chunkMs: plan.chunkMs,
    speed: plan.speed,
    replies: plan.replies,
    resume: plan.resume,
    owedAfterMs: setup.owedAfterMs,
  };
}
