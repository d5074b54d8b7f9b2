/**
 * The chaos run's phases. Each injects its fault for `activeSeconds` while the soak load runs, and
 * says what it did; the run counts what the load lost meanwhile (chaos.ts).
 * - workers: model worker threads killed at random (a `crash` job on whichever worker of the
 *   inference or VAD pool is free next, or the next recognition's worker exiting mid-job).
 * - drain: SIGTERM under load; the drained server's exit, then a new server on the same port.
 * - slow-readers: synthesis callers that stop reading; the server's RSS must stay bounded.
 * - resets: Transcribe streams whose connection is aborted or TCP-reset mid-stream.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { longText, type ReaderKind, type ResetKind, resetStream, startSlowReader } from './chaos-clients.js';
import type { Load } from './soak-load.js';
import type { ChaosPhase, ChaosPlan } from './soak-plan.js';
import type { Served } from './soak-sampler.js';
import type { Setup } from './soak-setup.js';
import { fmt, memoryOf } from './stt-stats.js';

export interface ChaosContext {
  readonly plan: ChaosPlan;
  readonly setup: Setup;
  readonly load: Load;
  served(): Served;
  /** Holds new turns back (target.ready() waits) until `resume`. */
  pause(): void;
  /** Serves from `next` on and lets turns start again. */
  resume(next?: Served): void;
  restart(grpcPort: number): Promise<Served>;
  log(line: string): void;
}

export interface PhaseOutcome {
  /** One line: what was done. */
  readonly actions: string;
  readonly details: readonly string[];
  /** Peak RSS of the server seen while the fault was on, MiB. */
  readonly peakRssMiB: number;
}

type Phase = (ctx: ChaosContext, activeSeconds: number) => Promise<PhaseOutcome>;

/** Samples the current server's RSS every 500 ms until stopped; returns the peak. */
function watchRss(ctx: ChaosContext): () => number {
  let peak = 0;
  const read = () => {
    const { service } = ctx.served();
    if (service.exited() === undefined) {
      try {
        peak = Math.max(peak, memoryOf(service.pid).rssMiB);
      } catch {
        // It exited between the check and the read.
      }
    }
  };
  read();
  const timer = setInterval(read, 500);
  return () => {
    clearInterval(timer);
    read();
    return peak;
  };
}

const jitter = (mean: number) => mean * (0.5 + Math.random());

const killWorkers: Phase = async (ctx, activeSeconds) => {
  const peak = watchRss(ctx);
  const { control } = ctx.served();
  const before = await control.stats();
  const counts = { 'inference crash': 0, 'VAD crash': 0, 'mid-recognition exit': 0, 'not injected': 0 };
  const end = performance.now() + activeSeconds * 1000;
  for (;;) {
    await sleep(jitter(ctx.plan.crashEverySeconds) * 1000);
    if (performance.now() >= end) break;
    const draw = Math.random();
    const [what, command] =
      draw < 0.45
        ? (['inference crash', { type: 'crash', pool: 'inference' }] as const)
        : draw < 0.65
          ? (['VAD crash', { type: 'crash', pool: 'vad' }] as const)
          : (['mid-recognition exit', { type: 'arm' }] as const);
    try {
      await control.request(command, 20_000);
      counts[what] += 1;
    } catch {
      counts['not injected'] += 1;
    }
  }
  // A dead worker is replaced after a short delay (the pool's restartDelayMs).
  await sleep(2000);
  const after = await control.stats();
  return {
    actions: Object.entries(counts)
      .filter(([, count]) => count > 0)
      .map(([what, count]) => `${what} × ${count}`)
      .join(', '),
    details: [
      `workers replaced: inference ${after.restarts.inference - before.restarts.inference}, VAD ${after.restarts.vad - before.restarts.vad}`,
      'a crash job runs on whichever worker of the pool is free next; a mid-recognition exit arms one worker to exit inside its next recognition (a final is retried once)',
    ],
    peakRssMiB: peak(),
  };
};

const drain: Phase = async (ctx, activeSeconds) => {
  const peak = watchRss(ctx);
  const started = performance.now();
  await sleep(Math.min(10, activeSeconds / 3) * 1000);
  const old = ctx.served();
  const port = old.service.grpcPort;
  const openAtSignal = ctx.load.active();
  ctx.pause();
  const signalled = performance.now();
  old.service.kill('SIGTERM');
  const exit = await old.service.ended;
  const drainSeconds = (performance.now() - signalled) / 1000;
  await old.service.stop();
  const next = await ctx.restart(port);
  const downSeconds = (performance.now() - signalled) / 1000;
  ctx.resume(next);
  await sleep(Math.max(0, activeSeconds * 1000 - (performance.now() - started)));
  return {
    actions: `SIGTERM with ${openAtSignal} streams open; the server ${exit === 'exit code 0' ? 'exited 0' : `ended with ${exit}`} after ${fmt(drainSeconds, 1)} s (drain_grace_seconds ${ctx.plan.drainGraceSeconds}); a new server took streams ${fmt(downSeconds, 1)} s after the signal${next.service.grpcPort === port ? ', on the same port' : `, on port ${next.service.grpcPort} (the old one was taken)`}`,
    details: [
      `new server pid ${next.service.pid}, ready in ${fmt(next.service.startSeconds, 1)} s`,
      'an owed final that did not come is lost; an utterance whose speech had begun to go out when the drain ended its stream is "cut"; of those, the ones whose speech the server read (by its DRAINING processed_audio_ms; at least min_speech_duration) are owed a final by a drain that flushes, and a resumed stream finishes every one',
    ],
    peakRssMiB: peak(),
  };
};

const READER_KINDS: readonly ReaderKind[] = ['never-reads', 'reads-one-then-stops', 'reads-every-2s'];
/** Seconds of speech each slow reader asks for. */
const READER_TEXT_SECONDS = 300;

const slowReaders: Phase = async (ctx, activeSeconds) => {
  const { service } = ctx.served();
  const address = `127.0.0.1:${service.grpcPort}`;
  const rssBefore = memoryOf(service.pid).rssMiB;
  const outBefore = (await service.scrape()).value('voice_audio_seconds_total', { direction: 'out' });
  const peak = watchRss(ctx);
  const readers = Array.from({ length: ctx.plan.slowReaders }, (_, index) =>
    startSlowReader(
      address,
      READER_KINDS[index % READER_KINDS.length] ?? 'never-reads',
      longText(READER_TEXT_SECONDS, index),
    ),
  );
  await sleep(activeSeconds * 1000);
  const outDuring =
    (await service.scrape()).value('voice_audio_seconds_total', { direction: 'out' }) - outBefore;
  const rssHeld = memoryOf(service.pid).rssMiB;
  const readMiB = readers.reduce((total, reader) => total + reader.bytesRead(), 0) / 1024 / 1024;
  await Promise.all(readers.map((reader) => reader.stop()));
  await sleep(5000);
  const rssAfter = memoryOf(service.pid).rssMiB;
  const byKind = READER_KINDS.map(
    (kind) => `${readers.filter((reader) => reader.kind === kind).length} ${kind}`,
  );
  return {
    actions: `${readers.length} synthesis calls of ~${READER_TEXT_SECONDS} s of speech each that stop reading (${byKind.join(', ')}), held ${activeSeconds} s, then cancelled`,
    details: [
      `server RSS ${fmt(rssBefore)} MiB before, ${fmt(rssHeld)} MiB with the readers still open, ${fmt(rssAfter)} MiB 5 s after they were cancelled`,
      `the server synthesized ${fmt(outDuring)} s of audio meanwhile for every caller (the load's replies included), of ${fmt(readers.length * READER_TEXT_SECONDS)} s the slow readers asked for; they read ${fmt(readMiB, 2)} MiB`,
    ],
    peakRssMiB: peak(),
  };
};

const RESET_KINDS: readonly ResetKind[] = ['sdk-abort', 'tcp-reset'];

const resets: Phase = async (ctx, activeSeconds) => {
  const peak = watchRss(ctx);
  const { service } = ctx.served();
  const address = `127.0.0.1:${service.grpcPort}`;
  const count = ctx.plan.resets;
  const spacingMs = (activeSeconds * 1000 * 0.7) / Math.max(1, count);
  const victims: Promise<void>[] = [];
  for (let index = 0; index < count; index += 1) {
    const kind = RESET_KINDS[index % RESET_KINDS.length] ?? 'sdk-abort';
    const audio = ctx.setup.audio[index % ctx.setup.audio.length];
    if (audio === undefined) break;
    victims.push(
      resetStream(address, kind, audio, 1000 + Math.random() * 7000, {
        model: ctx.setup.modelId,
        chunkMs: ctx.plan.chunkMs,
      }).catch(() => {}),
    );
    await sleep(spacingMs);
  }
  await Promise.all(victims);
  await sleep(3000);
  const open = (await service.scrape()).value('voice_active_streams', { grpc_method: 'Transcribe' });
  const ours = ctx.load.active();
  const rest = activeSeconds * 1000 * 0.3 - 3000;
  if (rest > 0) await sleep(rest);
  return {
    actions: `${count} Transcribe streams cut 1–8 s in (${RESET_KINDS.map((kind) => `${Math.ceil(count / RESET_KINDS.length)} ${kind}`).join(', ')}), each on its own connection`,
    details: [
      `3 s after the last reset the server had ${fmt(open)} Transcribe streams open, the load ${ours}: ${open > ours ? `${fmt(open - ours)} streams of reset connections left open` : 'none of the reset ones left open'}`,
    ],
    peakRssMiB: peak(),
  };
};

export const PHASES: Record<ChaosPhase, Phase> = {
  workers: killWorkers,
  drain,
  'slow-readers': slowReaders,
  resets,
};
