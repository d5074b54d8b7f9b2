/**
 * Text-to-speech benchmark: what the service adds on top of the eSpeak NG engine.
 *
 *   npm run bench:tts            (build, then node dist/bench/tts.js)
 *
 * Measures, for a four-sentence reply streamed token by token like a language model's output:
 * time to first audio through gRPC vs the engine's own time for the first sentence (and for the
 * whole text at once); throughput with 1, 2 and 4 concurrent streams vs the engine called directly
 * in as many worker threads as the server has model workers; and the latency of a cache hit.
 * Prints figures; asserts nothing. Every timed call speaks text not spoken before, so the server's
 * sentence cache never answers except where a cache hit is what is measured.
 */
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { SynthesizeRequestSchema, SynthesizeResponse } from '../clients/node/index.js';
import { createEspeakSynthesizer, ESPEAK_DEFAULT_VOICE } from '../server/engines/espeak-ng.js';
import { createSentenceSplitter } from '../server/pipeline/sentence-split.js';
import { startServerWithEngines, type TestServer } from '../test/helpers/test-server.js';

const VOICE = ESPEAK_DEFAULT_VOICE;
/** Pause between tokens of the streamed reply, like a fast language model (about 40 tokens/s at 4 characters). */
const TOKEN_DELAY_MS = 10;
const TTFA_RUNS = 20;
const ENGINE_RUNS = 30;
const THROUGHPUT_RUNS = 4;
/** Replies per stream in throughput runs (about 2000 characters, under the 5000-character limit). */
const REPLIES_PER_STREAM = 5;
const CONCURRENCY = [1, 2, 4] as const;
const CACHE_RUNS = 100;

type Request = MessageInitShape<typeof SynthesizeRequestSchema>;

/** A ~400-character four-sentence reply; every sentence names `variant`, so no run hits the cache. */
function reply(variant: number): string {
  const n = String(variant).padStart(3, '0');
  return [
    `Sure, I can help you plan trip number ${n} to the mountains with your friends this weekend.`,
    `The weather for trip ${n} looks clear on Saturday, with light wind and about twenty degrees in the afternoon.`,
    `You should leave early on trip ${n}, ideally before eight, because the roads near the lake get busy after nine.`,
    `Pack warm layers, some water and a paper map for route ${n}, in case the phone signal drops up there.`,
  ].join(' ');
}

/** A longer text for throughput runs: `replies` replies, each with its own variant. */
function longText(first: number, replies: number): string {
  return Array.from({ length: replies }, (_, i) => reply(first + i)).join(' ');
}

function tokenize(text: string): string[] {
  return text.match(/\s*\S{1,4}/g) ?? [];
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

const ms = (value: number) => `${value.toFixed(1)} ms`;

interface Row {
  readonly what: string;
  readonly p50: string;
  readonly p95: string;
  readonly note?: string;
}

function table(title: string, header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [
    `### ${title}`,
    '',
    line(header),
    `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`,
    ...rows.map(line),
    '',
  ].join('\n');
}

const latencyRows = (rows: readonly Row[]) => rows.map((row) => [row.what, row.p50, row.p95, row.note ?? '']);

// --- (a) time to first audio through the service ---------------------------------------------------

interface TtfaRun {
  /** From sending the token that completes the first sentence to the first audio chunk. */
  readonly fromSentenceMs: number;
  /** From the start of the call. */
  readonly fromStartMs: number;
}

async function timeToFirstAudio(t: TestServer, text: string): Promise<TtfaRun> {
  const tokens = tokenize(text);
  // The token whose arrival lets the splitter release the first sentence.
  const splitter = createSentenceSplitter({ language: 'en' });
  let completing = tokens.length - 1;
  for (const [index, token] of tokens.entries()) {
    if (splitter.push(token).length > 0) {
      completing = index;
      break;
    }
  }
  let completedAt = Number.NaN;
  const started = performance.now();
  async function* requests(): AsyncGenerator<Request> {
    yield { request: { case: 'config', value: { voice: VOICE } } };
    for (const [index, token] of tokens.entries()) {
      await sleep(TOKEN_DELAY_MS);
      if (index === completing) completedAt = performance.now();
      yield { request: { case: 'text', value: token } };
    }
  }
  let firstAt = Number.NaN;
  for await (const _ of t.client.synthesis.synthesize(requests())) {
    if (Number.isNaN(firstAt)) firstAt = performance.now();
  }
  return { fromSentenceMs: firstAt - completedAt, fromStartMs: firstAt - started };
}

// --- direct engine calls in worker threads, for the throughput baseline ----------------------------

interface DirectJob {
  readonly id: number;
  readonly text: string;
}
interface DirectResult {
  readonly id: number;
  readonly samples: number;
  readonly sampleRate: number;
}

async function runEngineWorker(): Promise<void> {
  const engine = createEspeakSynthesizer();
  await engine.load();
  const signal = new AbortController().signal;
  await engine.synthesize('ready', { voice: VOICE, speed: 1, signal });
  parentPort?.on('message', (job: DirectJob) => {
    engine.synthesize(job.text, { voice: VOICE, speed: 1, signal }).then((audio) => {
      parentPort?.postMessage({
        id: job.id,
        samples: audio.samples.length,
        sampleRate: audio.sampleRate,
      } satisfies DirectResult);
    });
  });
  parentPort?.postMessage('ready');
}

/** eSpeak NG in `size` worker threads, fed from one queue: the engine with nothing around it. */
async function createDirectPool(size: number) {
  const workers = await Promise.all(
    Array.from({ length: size }, async () => {
      const worker = new Worker(new URL(import.meta.url), { workerData: { engineWorker: true } });
      await new Promise<void>((resolve, reject) => {
        worker.once('message', () => resolve());
        worker.once('error', reject);
      });
      return worker;
    }),
  );
  const queue: { job: DirectJob; done: (result: DirectResult) => void }[] = [];
  const idle = [...workers];
  let nextId = 0;
  const pump = () => {
    while (idle.length > 0 && queue.length > 0) {
      const worker = idle.pop();
      const item = queue.shift();
      if (!worker || !item) return;
      worker.once('message', (result: DirectResult) => {
        idle.push(worker);
        item.done(result);
        pump();
      });
      worker.postMessage(item.job);
    }
  };
  return {
    synthesize(text: string): Promise<DirectResult> {
      return new Promise((done) => {
        queue.push({ job: { id: nextId++, text }, done });
        pump();
      });
    },
    close: () => Promise.all(workers.map((worker) => worker.terminate())),
  };
}

/** Sentences as the service would cut them. */
function sentencesOf(text: string): string[] {
  const splitter = createSentenceSplitter({ language: 'en' });
  return [...splitter.push(text), ...splitter.flush()].map((segment) => segment.text);
}

interface Throughput {
  readonly audioSecondsPerSecond: number;
  readonly charsPerSecond: number;
  /** Share of the wall time this process's main thread was busy (server, client and gRPC together). */
  readonly mainThreadBusy: number;
}

async function serviceThroughput(t: TestServer, texts: readonly string[]): Promise<Throughput> {
  const loop = performance.eventLoopUtilization();
  const started = performance.now();
  const audioSeconds = await Promise.all(
    texts.map(async (text) => {
      let samples = 0;
      let rate = 1;
      for await (const response of t.client.synthesis.synthesizeText({ text, config: { voice: VOICE } })) {
        samples += response.sampleCount;
        rate = response.format?.sampleRateHz ?? rate;
      }
      return samples / rate;
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const chars = texts.reduce((sum, text) => sum + text.length, 0);
  return {
    audioSecondsPerSecond: audioSeconds.reduce((a, b) => a + b, 0) / seconds,
    charsPerSecond: chars / seconds,
    mainThreadBusy: performance.eventLoopUtilization(loop).utilization,
  };
}

/** Each stream's sentences go to the pool in order, at most `perStream` at once, as the service does. */
async function directThroughput(
  pool: Awaited<ReturnType<typeof createDirectPool>>,
  texts: readonly string[],
  perStream: number,
): Promise<Throughput> {
  const loop = performance.eventLoopUtilization();
  const started = performance.now();
  const audioSeconds = await Promise.all(
    texts.map(async (text) => {
      const sentences = sentencesOf(text);
      let total = 0;
      let next = 0;
      const lane = async () => {
        while (next < sentences.length) {
          const sentence = sentences[next++] ?? '';
          const result = await pool.synthesize(sentence);
          total += result.samples / result.sampleRate;
        }
      };
      await Promise.all(Array.from({ length: perStream }, lane));
      return total;
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const chars = texts.reduce((sum, text) => sum + text.length, 0);
  return {
    audioSecondsPerSecond: audioSeconds.reduce((a, b) => a + b, 0) / seconds,
    charsPerSecond: chars / seconds,
    mainThreadBusy: performance.eventLoopUtilization(loop).utilization,
  };
}

// --- main ------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const benchStarted = performance.now();
  const loadBefore = loadavg()[0] ?? 0;
  let variant = 0;
  const t = await startServerWithEngines({
    logging: { level: 'warn' },
    security: { rate_limit: { enabled: false } },
  });
  const workers = t.config.performance.workers;
  const perStream = Math.min(2, workers);
  try {
    // Warm the connection and the workers.
    for (let i = 0; i < 3; i++) await timeToFirstAudio(t, reply(900 + i));

    // (b), (c): the engine in this process, the same texts.
    const engine = createEspeakSynthesizer();
    await engine.load();
    const signal = new AbortController().signal;
    await engine.synthesize('ready', { voice: VOICE, speed: 1, signal });
    const firstSentence: number[] = [];
    const wholeText: number[] = [];
    for (let i = 0; i < ENGINE_RUNS; i++) {
      const text = reply(500 + i);
      const first = sentencesOf(text)[0] ?? '';
      let at = performance.now();
      await engine.synthesize(first, { voice: VOICE, speed: 1, signal });
      firstSentence.push(performance.now() - at);
      at = performance.now();
      await engine.synthesize(text, { voice: VOICE, speed: 1, signal });
      wholeText.push(performance.now() - at);
    }

    // (a): through the service.
    const ttfa: TtfaRun[] = [];
    for (let i = 0; i < TTFA_RUNS; i++) ttfa.push(await timeToFirstAudio(t, reply(variant++)));
    const fromSentence = ttfa.map((run) => run.fromSentenceMs);
    const overhead = percentile(fromSentence, 50) - percentile(firstSentence, 50);
    const latency = table(
      `Time to first audio (${TTFA_RUNS} runs; reply of ${reply(0).length} characters, ${tokenize(reply(0)).length} tokens, one every ${TOKEN_DELAY_MS} ms)`,
      ['measure', 'p50', 'p95', 'note'],
      latencyRows([
        {
          what: '(a) service: first sentence complete → first audio',
          p50: ms(percentile(fromSentence, 50)),
          p95: ms(percentile(fromSentence, 95)),
          note: 'bidi Synthesize over gRPC',
        },
        {
          what: '(a) service: call start → first audio',
          p50: ms(
            percentile(
              ttfa.map((run) => run.fromStartMs),
              50,
            ),
          ),
          p95: ms(
            percentile(
              ttfa.map((run) => run.fromStartMs),
              95,
            ),
          ),
          note: 'includes waiting for the tokens of sentence 1',
        },
        {
          what: '(b) engine: first sentence',
          p50: ms(percentile(firstSentence, 50)),
          p95: ms(percentile(firstSentence, 95)),
          note: 'createEspeakSynthesizer in-process',
        },
        {
          what: '(c) engine: whole text at once',
          p50: ms(percentile(wholeText, 50)),
          p95: ms(percentile(wholeText, 95)),
          note: 'what a non-streaming service would wait for',
        },
        {
          what: '(a) − (b), service overhead',
          p50: ms(overhead),
          p95: '',
          note: `difference of the medians; target ≤ 20 ms: ${overhead <= 20 ? 'met' : 'NOT met'}`,
        },
      ]),
    );
    console.log(latency);

    // Throughput: N concurrent streams through the service vs the engine in `workers` threads.
    const pool = await createDirectPool(workers);
    const throughputRows: string[][] = [];
    try {
      await directThroughput(pool, [longText(950, 2)], perStream);
      for (const n of CONCURRENCY) {
        const service: Throughput[] = [];
        const direct: Throughput[] = [];
        for (let run = 0; run < THROUGHPUT_RUNS; run++) {
          // Alternate, so drifting load on a shared machine affects both alike.
          const texts = () =>
            Array.from({ length: n }, () => {
              const text = longText(variant, REPLIES_PER_STREAM);
              variant += REPLIES_PER_STREAM;
              return text;
            });
          service.push(await serviceThroughput(t, texts()));
          direct.push(await directThroughput(pool, texts(), perStream));
        }
        const median = (values: Throughput[], key: keyof Throughput) =>
          percentile(
            values.map((v) => v[key]),
            50,
          );
        const ratio = median(service, 'audioSecondsPerSecond') / median(direct, 'audioSecondsPerSecond');
        throughputRows.push([
          String(n),
          median(service, 'audioSecondsPerSecond').toFixed(1),
          median(direct, 'audioSecondsPerSecond').toFixed(1),
          median(service, 'charsPerSecond').toFixed(0),
          median(direct, 'charsPerSecond').toFixed(0),
          `${(ratio * 100).toFixed(1)} %${ratio >= 0.95 ? '' : ' (below 95 %)'}`,
          `${(median(service, 'mainThreadBusy') * 100).toFixed(0)} %`,
        ]);
      }
    } finally {
      await pool.close();
    }
    const throughput = table(
      `Throughput (median of ${THROUGHPUT_RUNS} runs; each stream one SynthesizeText of ${longText(0, REPLIES_PER_STREAM).length} characters; engine baseline in ${workers} worker threads, ${perStream} sentences per stream at once)`,
      [
        'streams',
        'service audio s/s',
        'engine audio s/s',
        'service chars/s',
        'engine chars/s',
        'service / engine',
        'main thread busy (service)',
      ],
      throughputRows,
    );
    console.log(throughput);

    // Cache hits: the same sentence again and again.
    const sentence = 'Thanks, your booking is confirmed.';
    const hitFirst: number[] = [];
    const hitAll: number[] = [];
    const call = async () => {
      const at = performance.now();
      let first = Number.NaN;
      const responses: SynthesizeResponse[] = [];
      for await (const response of t.client.synthesis.synthesizeText({
        text: sentence,
        config: { voice: VOICE },
      })) {
        if (Number.isNaN(first)) first = performance.now() - at;
        responses.push(response);
      }
      return { first, all: performance.now() - at };
    };
    const miss = await call();
    for (let i = 0; i < CACHE_RUNS; i++) {
      const hit = await call();
      hitFirst.push(hit.first);
      hitAll.push(hit.all);
    }
    const cache = table(
      `Cache hits (${CACHE_RUNS} SynthesizeText calls of "${sentence}")`,
      ['measure', 'p50', 'p95', 'note'],
      latencyRows([
        {
          what: 'hit: call start → first audio',
          p50: ms(percentile(hitFirst, 50)),
          p95: ms(percentile(hitFirst, 95)),
        },
        { what: 'hit: whole call', p50: ms(percentile(hitAll, 50)), p95: ms(percentile(hitAll, 95)) },
        { what: 'first call (miss): whole call', p50: ms(miss.all), p95: '', note: 'one run' },
      ]),
    );
    console.log(cache);
    const machine = `${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
    const load = `load average ${loadBefore.toFixed(1)} before, ${(loadavg()[0] ?? 0).toFixed(1)} after`;
    console.log(
      `Machine: ${machine}; ${load}; ${workers} model workers; run took ${((performance.now() - benchStarted) / 1000).toFixed(0)} s`,
    );
  } finally {
    await t.stop();
  }
}

if (isMainThread) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
} else if ((workerData as { engineWorker?: boolean } | undefined)?.engineWorker) {
  await runEngineWorker();
}
