/**
 * Kokoro benchmark: what a Kokoro voice would cost per second of audio on this machine, without the
 * real weights (the hub cannot be reached here).
 *
 *   npm run bench:kokoro            (build, then node dist/bench/kokoro.js)
 *
 * Builds, in a temp folder (deleted afterwards, never committed), a Kokoro-shaped graph of about the
 * real model's 82 M parameters — the tiny test graph's inputs, outputs and durations, plus a network
 * whose output is mixed into the waveform (test/fixtures/kokoro-model.ts, `body`): hidden width 512,
 * 13 feed-forward blocks (512 → 2048 → 512) per token standing for Kokoro's PL-BERT, text encoder and
 * prosody predictor (~28 M parameters), and 26 per frame of 25 ms standing for its decoder (~54 M).
 * It is not Kokoro: the real decoder is convolutions and an iSTFT over upsampled sequences (more
 * arithmetic per parameter than one matrix product per frame), the real predictor has LSTMs, and the
 * graph's tokens last 2–6 frames where Kokoro's phonemes last ~2–3. Treat the figure as an order of
 * magnitude, likely low. The same engine (eSpeak phonemes, tokens, runs, timing) speaks through it,
 * through the tiny test graph (the engine's own overhead) and, as the baseline measured in the same
 * run, eSpeak NG alone on the same text.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEspeakSynthesizer } from '../server/engines/espeak-ng.js';
import { createKokoroSynthesizer } from '../server/engines/kokoro-tts.js';
import type { SpeechSynthesizer } from '../server/engines/types.js';
import { generateKokoroModel, type KokoroBody, kokoroBodyParameters } from '../test/fixtures/kokoro-model.js';

const BODY: KokoroBody = { width: 512, ffn: 2048, tokenLayers: 13, frameLayers: 26 };
const RUNS = 5;
const TEXTS = [
  'Sure, I can help you plan the trip to the mountains this weekend.',
  'The weather looks clear on Saturday, with light wind and about twenty degrees in the afternoon.',
  'Pack warm layers, some water and a paper map, in case the phone signal drops up there.',
];

interface Measured {
  readonly audioSeconds: number;
  readonly wallMs: number;
  readonly cpuMs: number;
}

async function measure(engine: SpeechSynthesizer, voice: string): Promise<Measured> {
  const signal = new AbortController().signal;
  await engine.synthesize('Warm up.', { voice, speed: 1, signal });
  let audioSeconds = 0;
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const cpu = process.cpuUsage();
    const started = performance.now();
    let seconds = 0;
    for (const text of TEXTS) {
      const audio = await engine.synthesize(text, { voice, speed: 1, signal });
      seconds += audio.samples.length / audio.sampleRate;
    }
    walls.push(performance.now() - started);
    const used = process.cpuUsage(cpu);
    cpus.push((used.user + used.system) / 1000);
    audioSeconds = seconds;
  }
  return { audioSeconds, wallMs: median(walls), cpuMs: median(cpus) };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

const row = (what: string, m: Measured) =>
  `| ${what.padEnd(44)} | ${m.audioSeconds.toFixed(2).padStart(7)} | ${(m.wallMs / m.audioSeconds).toFixed(1).padStart(9)} | ${(m.cpuMs / m.audioSeconds).toFixed(1).padStart(8)} | ${(m.wallMs / 1000 / m.audioSeconds).toFixed(3).padStart(6)} |`;

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'voice-bench-kokoro-'));
  try {
    const before = loadavg();
    let started = performance.now();
    await generateKokoroModel({ root, modelId: 'bench/kokoro-sized', voices: ['af_heart'], body: BODY });
    const buildMs = performance.now() - started;
    await generateKokoroModel({ root, modelId: 'bench/kokoro-tiny', voices: ['af_heart'] });
    const engine = (model: string, threads: number) =>
      createKokoroSynthesizer({ cacheDir: root, model, dtype: 'fp32', voices: ['af_heart'], threads });

    const espeak = createEspeakSynthesizer();
    await espeak.load();
    const tiny = engine('bench/kokoro-tiny', 1);
    await tiny.load();
    const rows: string[] = [];
    rows.push(row('eSpeak NG alone (baseline)', await measure(espeak, 'espeak:en-us')));
    rows.push(row('Kokoro engine, tiny test graph', await measure(tiny, 'kokoro:af_heart')));
    let loadMs = 0;
    for (const threads of [1, 2]) {
      const sized = engine('bench/kokoro-sized', threads);
      started = performance.now();
      const report = await sized.load();
      loadMs = performance.now() - started;
      if (report.voices.length === 0) throw new Error(JSON.stringify(report.unavailable));
      rows.push(
        row(
          `Kokoro engine, 82 M-parameter graph, ${threads} thread(s)`,
          await measure(sized, 'kokoro:af_heart'),
        ),
      );
    }
    const after = loadavg();
    process.stdout.write(
      [
        `### Kokoro cost per second of audio (median of ${RUNS} runs of ${TEXTS.length} sentences)`,
        '',
        `graph: ${(kokoroBodyParameters(BODY) / 1e6).toFixed(1)} M parameters (width ${BODY.width}, ffn ${BODY.ffn}, ` +
          `${BODY.tokenLayers} token blocks, ${BODY.frameLayers} frame blocks); built in ${(buildMs / 1000).toFixed(1)} s, ` +
          `session load ${(loadMs / 1000).toFixed(1)} s`,
        '',
        '| engine                                       | audio s | wall ms/s | CPU ms/s |    RTF |',
        '| -------------------------------------------- | ------- | --------- | -------- | ------ |',
        ...rows,
        '',
        `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; load average before ${before.map((v) => v.toFixed(2)).join(' ')}, ` +
          `after ${after.map((v) => v.toFixed(2)).join(' ')} (other work shares these cores)`,
        '',
      ].join('\n'),
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
