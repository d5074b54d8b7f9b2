/**
 * Barge-in benchmark: how fast a Clear silences a Synthesize stream.
 *
 *   npm run bench:barge-in       (build, then node dist/bench/barge-in.js)
 *
 * A four-sentence reply is sent at once; the client reads like a player (every chunk as it comes)
 * and sends a Clear once `CLEAR_AFTER_CHUNKS` chunks have arrived. Measured per run: clear → the
 * last audio chunk that still arrived, clear → the Interruption answer, and how much audio arrived
 * after the clear. Baseline in the same run and connection: a unary ListVoices round trip, which
 * is the least any answer from the server can take. A second case clears while the client has not
 * read the chunks the server queued (a player that stalled). Prints figures; asserts nothing.
 */
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { SynthesizeRequestSchema } from '../clients/node/index.js';
import { startServerWithEngines, type TestServer } from '../test/helpers/test-server.js';

type Request = MessageInitShape<typeof SynthesizeRequestSchema>;

const RUNS = 30;
const CLEAR_AFTER_CHUNKS = 2;
const REPLY = [
  'Sure, I can help you plan the trip to the mountains this weekend.',
  'The weather looks clear on Saturday, with light wind in the afternoon.',
  'You should leave early, because the roads get busy after nine.',
  'Pack warm layers, some water, and a map in case the phone signal drops.',
];

interface Run {
  readonly toLastChunkMs: number;
  readonly toAnswerMs: number;
  readonly audioAfterClearMs: number;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** One call: the reply, a Clear after `clearAfter` chunks read (reading stops until then if `stall`). */
async function bargeIn(t: TestServer, variant: number, stall: boolean): Promise<Run> {
  let sendClear: (() => void) | undefined;
  const clearWanted = new Promise<void>((resolve) => {
    sendClear = resolve;
  });
  let clearedAt = Number.NaN;
  async function* requests(): AsyncGenerator<Request> {
    yield { request: { case: 'config', value: { voice: 'espeak:en-us' } } };
    yield { request: { case: 'text', value: `${REPLY.join(' ')} (${variant})` } };
    await clearWanted;
    clearedAt = performance.now();
    yield { request: { case: 'clear', value: {} } };
  }
  let chunks = 0;
  let lastChunkAt = Number.NaN;
  let audioAfterClear = 0;
  let answerAt = Number.NaN;
  const stream = t.client.synthesis.synthesize(requests());
  for await (const response of stream) {
    if (response.interruption !== undefined) {
      answerAt = performance.now();
      break;
    }
    chunks += 1;
    if (!Number.isNaN(clearedAt)) {
      lastChunkAt = performance.now();
      audioAfterClear += (1000 * response.sampleCount) / (response.format?.sampleRateHz ?? 1);
    }
    if (chunks === CLEAR_AFTER_CHUNKS) {
      sendClear?.();
      // A stalled player: the server fills its queue before the client reads again.
      if (stall) await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }
  return {
    toLastChunkMs: Number.isNaN(lastChunkAt) ? 0 : lastChunkAt - clearedAt,
    toAnswerMs: answerAt - clearedAt,
    audioAfterClearMs: audioAfterClear,
  };
}

async function main(): Promise<void> {
  const loadBefore = loadavg()[0] ?? 0;
  const t = await startServerWithEngines({
    logging: { level: 'warn' },
    security: { rate_limit: { enabled: false } },
  });
  try {
    for (let i = 0; i < 3; i++) await bargeIn(t, 1000 + i, false);
    const roundTrips: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const at = performance.now();
      await t.client.synthesis.listVoices({ language: 'en' });
      roundTrips.push(performance.now() - at);
    }
    const rows: string[] = [];
    for (const stall of [false, true]) {
      const runs: Run[] = [];
      for (let i = 0; i < RUNS; i++) runs.push(await bargeIn(t, i + (stall ? RUNS : 0), stall));
      const line = (what: string, values: readonly number[], unit = 'ms') =>
        `| ${stall ? 'stalled player' : 'live player'} | ${what} | ${percentile(values, 50).toFixed(1)} ${unit} | ${percentile(values, 95).toFixed(1)} ${unit} |`;
      rows.push(
        line(
          'clear → last audio chunk received',
          runs.map((r) => r.toLastChunkMs),
        ),
        line(
          'clear → Interruption answer',
          runs.map((r) => r.toAnswerMs),
        ),
        line(
          'audio received after the clear',
          runs.map((r) => r.audioAfterClearMs),
          'ms of audio',
        ),
        `| ${stall ? 'stalled player' : 'live player'} | answer / ListVoices round trip (p50) | ${(
          percentile(
            runs.map((r) => r.toAnswerMs),
            50,
          ) / percentile(roundTrips, 50)
        ).toFixed(2)}× | |`,
      );
    }
    console.log(
      `Barge-in (${RUNS} runs per case; espeak:en-us; a 4-sentence reply; clear after ${CLEAR_AFTER_CHUNKS} chunks)\n`,
    );
    console.log('| case | measure | p50 | p95 |\n|---|---|---|---|');
    console.log(
      `| baseline | ListVoices round trip | ${percentile(roundTrips, 50).toFixed(1)} ms | ${percentile(roundTrips, 95).toFixed(1)} ms |`,
    );
    for (const row of rows) console.log(row);
    console.log(
      `\nMachine: ${cpus().length} CPUs, Node ${process.version}; load average ${loadBefore.toFixed(1)} before, ${(loadavg()[0] ?? 0).toFixed(1)} after`,
    );
  } finally {
    await t.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
