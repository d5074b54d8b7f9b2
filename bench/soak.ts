/**
 * Soak run: real-time Transcribe streams (eSpeak speech with pauses, a known number of utterances
 * per stream) with a SynthesizeText reply after each final, for a fixed time, against the server in
 * a child process (bench/chaos-server.ts, no fault injection) on 127.0.0.1 with ephemeral ports and
 * a generated model. Samples the server's memory, handles and event-loop delay every few seconds
 * and prints a Markdown report; it asserts nothing.
 *
 *   node dist/bench/soak.js [--minutes 10] [--streams 6] [--utterances 4] [--model moonshine-tiny]
 *                           [--speed 1] [--no-replies] [--warmup-minutes 1] [--sample-seconds 5]
 *                           [--heap-snapshots DIR] [--worker-memory] [--node-option=--expose-gc]
 *                           [--max-final-delay-ms 0] [--json FILE]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLoad } from './soak-load.js';
import { parseSoakPlan } from './soak-plan.js';
import { renderSoak, type SoakResult } from './soak-report.js';
import { type Served, startSampler } from './soak-sampler.js';
import { loadOptions, prepare, startServer } from './soak-setup.js';

const plan = parseSoakPlan(process.argv.slice(2));
const log = (line: string) => process.stderr.write(`[soak] ${line}\n`);
const loadAtStart = loadavg();
const IDLE_SECONDS = 10;

const setup = await prepare(plan, log);
let served: Served | undefined;
try {
  served = await startServer(setup, plan, { testHooks: plan.workerMemory });
  const { service, control } = served;
  log(
    `server pid ${service.pid} ready in ${service.startSeconds.toFixed(1)} s; load for ${plan.minutes} min`,
  );
  const load = startLoad(
    { client: () => service.client, ready: async () => {} },
    setup.audio,
    loadOptions(setup, plan),
  );
  const sampler = startSampler(
    () => served,
    () => ({ streams: load.tally.streams, finals: load.tally.finals, replies: load.tally.synthOk }),
    plan.sampleSeconds * 1000,
    { workers: plan.workerMemory },
  );
  await sampler.sample();
  const snapshot = async (name: string) => {
    if (plan.heapSnapshots === undefined) return;
    mkdirSync(plan.heapSnapshots, { recursive: true });
    const file = resolve(join(plan.heapSnapshots, `${name}.heapsnapshot`));
    await control.request({ type: 'snapshot', file }, 300_000);
    log(`heap snapshot ${file}`);
  };

  const warmupSeconds = plan.warmupMinutes * 60;
  const loadSeconds = plan.minutes * 60;
  const progress = setInterval(() => {
    const last = sampler.samples.at(-1);
    if (last !== undefined) {
      log(
        `${(last.at / 60).toFixed(1)} min: RSS ${last.rssMiB.toFixed(0)} MiB, heap ${last.heapUsedMiB.toFixed(1)} MiB, ${last.finals} finals, ${load.tally.lost} lost, ${load.tally.errors.size} error kinds`,
      );
    }
  }, 60_000);
  await sleep(warmupSeconds * 1000);
  await snapshot('soak-1-warmup');
  await sleep(Math.max(0, loadSeconds - warmupSeconds) * 1000);
  await sampler.sample();
  log('load stopping; waiting for the streams in progress to end');
  await load.stop();
  clearInterval(progress);
  await sleep(IDLE_SECONDS * 1000);
  if (plan.execArgv.includes('--expose-gc')) await control.request({ type: 'gc' }).catch(() => undefined);
  const idle = await sampler.sample();
  sampler.stop();
  const metrics = await service.scrape().catch(() => undefined);
  const cache =
    metrics === undefined
      ? undefined
      : {
          hits: metrics.value('voice_tts_cache_requests_total', { result: 'hit' }),
          misses: metrics.value('voice_tts_cache_requests_total', { result: 'miss' }),
        };
  await snapshot('soak-2-end');

  const result: SoakResult = {
    title: `Soak: ${plan.minutes} min, ${plan.streams} real-time streams${plan.speed === 1 ? '' : ` at ${plan.speed}× real time`}`,
    settings: [
      ['model', setup.modelLabel],
      [
        'streams',
        `${plan.streams} loops of ${plan.utterances}-utterance streams (${setup.audio[0]?.seconds.toFixed(1)} s each), ${plan.chunkMs} ms chunks`,
      ],
      [
        'replies',
        plan.replies ? 'a SynthesizeText (eSpeak NG, LINEAR16) after each final, read to the end' : 'off',
      ],
      [
        'server',
        `bench/chaos-server.js (server/app.ts as main.ts builds it), ${plan.workers} inference workers, pid ${service.pid}, ready in ${service.startSeconds.toFixed(1)} s`,
      ],
      [
        'machine',
        `${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}`,
      ],
      [
        'admission by capacity',
        plan.maxFinalDelayMs === 0
          ? 'off (max_final_delay_ms 0: a steady load on a noisy machine)'
          : `max_final_delay_ms ${plan.maxFinalDelayMs}`,
      ],
      [
        'sentence cache',
        plan.ttsCacheMb === undefined
          ? 'the default performance.tts_cache_mb (64)'
          : `performance.tts_cache_mb ${plan.ttsCacheMb}`,
      ],
      ['warm-up', `${plan.warmupMinutes} min; samples every ${plan.sampleSeconds} s`],
    ],
    tally: load.tally,
    samples: sampler.samples,
    warmupSeconds,
    loadSeconds,
    idle,
    serverExit: service.exited(),
    loadAtStart,
    loadAtEnd: loadavg(),
    cache,
    notes: [
      ...(plan.heapSnapshots === undefined
        ? []
        : ['Heap snapshots stop the server for seconds: the worst event-loop delay includes them.']),
      'RSS is the whole server process: the main thread, the model worker threads and their onnxruntime arenas (native memory no heap figure shows); heap and external figures are the main thread unless the column says workers (--worker-memory).',
      'A final is owed when the utterance and the pause after it (min_silence_ms + 300 ms) went out before the stream ended.',
    ],
  };
  process.stdout.write(`${renderSoak(result)}\n`);
  if (plan.json !== undefined)
    writeFileSync(
      plan.json,
      `${JSON.stringify({ ...result, tally: { ...result.tally, errors: Object.fromEntries(result.tally.errors) } }, null, 2)}\n`,
    );
} finally {
  await served?.service.stop();
  setup.cleanup();
}
