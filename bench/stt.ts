/**
 * Speech-to-text benchmark. For each generated model (Whisper and Moonshine at the real tiny and
 * base dimensions, random weights: true compute cost, a fixed output), on the same audio and cores:
 * (a) the library's pipeline called directly on two worker threads, and (b) the service over gRPC
 * at 1, 20, 50 and 100 concurrent real-time streams (more levels and a search in the full form), an
 * unpaced capacity run, and for moonshine-base a pair of one-stream runs with speculative finals on
 * and off. Markdown tables on stdout; it asserts nothing.
 *
 *   node dist/bench/stt.js [--quick] [--models moonshine-tiny,…] [--levels 1,5] [--utterances 2]
 *                          [--no-search] [--chunk-ms 40] [--json results.json]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../server/config.js';
import { resolveSegmenterConfig } from '../server/pipeline/utterance-segmenter.js';
import { buildStream, SAMPLE_RATE, speakSentences } from './stt-audio.js';
import { segmentStream } from './stt-direct.js';
import { benchModel, inSection, type ModelResult, type Section, type Shared } from './stt-model-bench.js';
import { generateModel } from './stt-models.js';
import { parsePlan } from './stt-plan.js';
import { type Report, renderReport } from './stt-report.js';

const plan = parsePlan(process.argv.slice(2));
const log = (line: string) => process.stderr.write(`[bench:stt] ${line}\n`);
const benchStarted = performance.now();
const loadAtStart = loadavg();

const defaults = loadConfig({ env: {} });
const vadSettings = defaults.models.vad;
const segmenter = resolveSegmenterConfig({
  threshold: vadSettings.threshold,
  minSpeechMs: vadSettings.min_speech_ms,
  minSilenceMs: vadSettings.min_silence_ms,
  speechPadMs: vadSettings.speech_pad_ms,
});
const vadVersion = vadSettings.model === 'silero_v6' ? 'v6' : vadSettings.model === 'silero_v5' ? 'v5' : 'v4';

const scratch = mkdtempSync(join(tmpdir(), 'voice-bench-stt-'));
try {
  const report = await run();
  process.stdout.write(`${renderReport(report)}\n`);
  if (plan.json !== undefined) writeFileSync(plan.json, `${JSON.stringify(report, null, 2)}\n`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

async function run(): Promise<Report> {
  const sections: Section[] = [];
  const sentences = speakSentences();
  // Every sentence once: the utterances (a) recognises and the capacity runs send.
  const reference = buildStream(sentences, 0, sentences.length);
  const segmentation = await inSection(sections, 'VAD cut of the reference stream', () =>
    segmentStream(reference, { version: vadVersion, segmenter, chunkSamples: plan.chunkSamples }),
  );
  const slices = segmentation.slices;
  log(`the VAD cut ${slices.length} utterances from ${reference.seconds.toFixed(1)} s of audio`);
  const shared: Shared = { plan, sentences, reference, slices, sections, log };

  const models: ModelResult[] = [];
  for (const key of plan.models) {
    const model = await generateModel(scratch, key);
    log(`generated ${model.modelId} (${model.dims}) in ${model.genSeconds.toFixed(1)} s`);
    if (!model.realDims) log(`warning: ${key} is not at the real dimensions`);
    models.push(await benchModel(model, shared));
  }

  return {
    machine: {
      cores: availableParallelism(),
      cpu: cpus()[0]?.model ?? 'unknown',
      memoryGiB: totalmem() / 1024 ** 3,
      node: process.version,
      onnxruntime: versionOf('onnxruntime-node'),
      transformers: versionOf('@huggingface/transformers'),
      date: new Date().toISOString(),
      loadAtStart: loadAtStart.map(round2),
      loadAtEnd: loadavg().map(round2),
      command: `node dist/bench/stt.js ${process.argv.slice(2).join(' ')}`.trim(),
      benchSeconds: (performance.now() - benchStarted) / 1000,
    },
    settings: {
      quick: plan.quick,
      workers: plan.workers,
      chunkMs: plan.chunkMs,
      vadModel: `silero-vad-${vadVersion}`,
      minSilenceMs: segmenter.minSilenceMs,
      speechPadMs: segmenter.speechPadMs,
      maxFinalDelayMs: defaults.performance.max_final_delay_ms,
      boundMs: plan.boundMs,
    },
    reference: {
      seconds: reference.seconds,
      utterances: slices.length,
      utteranceSeconds: slices.reduce((total, slice) => total + slice.audio.length / SAMPLE_RATE, 0),
      vadCpuSeconds: segmentation.cpuSeconds,
    },
    sections,
    models,
  };
}

/** The installed version of a dependency, from its package.json. */
function versionOf(name: string): string {
  const read = (file: string) => (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version;
  try {
    return read(createRequire(import.meta.url).resolve(`${name}/package.json`)) ?? 'unknown';
  } catch {
    try {
      return read(join(process.cwd(), 'node_modules', name, 'package.json')) ?? 'unknown';
    } catch {
      return 'unknown';
    }
  }
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
