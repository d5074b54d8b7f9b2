/**
 * Chaos run: the soak's load (real-time Transcribe streams, a reply after each final) against
 * bench/chaos-server.ts with fault injection, through phases (chaos-phases.ts): a baseline, then
 * worker threads killed at random, SIGTERM (drain) and a new server, synthesis callers that stop
 * reading, and connections reset mid-stream. Each phase reports what the load lost and whether the
 * server lived; nothing is asserted.
 *
 *   node dist/bench/chaos.js [--phases workers,drain,slow-readers,resets] [--phase-seconds 60]
 *                            [--streams 6] [--model moonshine-tiny] [--resume] [--crash-every-seconds 6]
 *                            [--slow-readers 8] [--resets 20] [--drain-grace-seconds 5] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ServingStatus } from '../clients/node/index.js';
import { type ChaosContext, PHASES } from './chaos-phases.js';
import { type PhaseResult, renderChaos } from './chaos-report.js';
import { startLoad } from './soak-load.js';
import { parseChaosPlan } from './soak-plan.js';
import { type Served, startSampler } from './soak-sampler.js';
import { loadOptions, prepare, startServer } from './soak-setup.js';
import { createTally, type Tally } from './soak-tally.js';
import { memoryOf } from './stt-stats.js';

const plan = parseChaosPlan(process.argv.slice(2));
const log = (line: string) => process.stderr.write(`[chaos] ${line}\n`);
const loadAtStart = loadavg();
/** The end of each phase without faults, so that the streams they hit end inside the phase. */
const settleSeconds = Math.round(Math.min(20, plan.phaseSeconds / 3));
const serverOptions = { testHooks: true, drainGraceSeconds: plan.drainGraceSeconds };

const setup = await prepare(plan, log);
let served: Served | undefined;
const servers: Served[] = [];
try {
  served = await startServer(setup, plan, serverOptions);
  servers.push(served);
  let current = served;
  let gate: { promise: Promise<void>; open: () => void } | undefined;
  const load = startLoad(
    { client: () => current.service.client, ready: () => gate?.promise ?? Promise.resolve() },
    setup.audio,
    loadOptions(setup, plan),
  );
  const tallies: Tally[] = [];
  const total = (pick: (tally: Tally) => number) => tallies.reduce((sum, tally) => sum + pick(tally), 0);
  const sampler = startSampler(
    () => current,
    () => ({
      streams: total((t) => t.streams),
      finals: total((t) => t.finals),
      replies: total((t) => t.synthOk),
    }),
    plan.sampleSeconds * 1000,
  );
  const ctx: ChaosContext = {
    plan,
    setup,
    load,
    served: () => current,
    pause() {
      let open = () => {};
      const promise = new Promise<void>((resolve) => {
        open = resolve;
      });
      gate = { promise, open };
    },
    resume(next) {
      if (next !== undefined) current = next;
      gate?.open();
      gate = undefined;
    },
    async restart(grpcPort) {
      for (let attempt = 1; ; attempt += 1) {
        try {
          const next = await startServer(setup, plan, {
            ...serverOptions,
            grpcPort: attempt <= 3 ? grpcPort : 0,
          });
          servers.push(next);
          return next;
        } catch (error) {
          log(
            `restart attempt ${attempt} failed: ${error instanceof Error ? error.message.slice(0, 200) : error}`,
          );
          if (attempt >= 5) throw error;
          await sleep(1000);
        }
      }
    },
    log,
  };

  const results: PhaseResult[] = [];
  for (const phase of ['baseline', ...plan.phases] as const) {
    const tally = createTally();
    tallies.push(tally);
    load.tally = tally;
    const rssOf = () => {
      try {
        return memoryOf(current.service.pid).rssMiB;
      } catch {
        return Number.NaN;
      }
    };
    const rssStartMiB = rssOf();
    const activeSeconds = plan.phaseSeconds - settleSeconds;
    log(`phase ${phase}: ${activeSeconds} s of faults, then ${settleSeconds} s to settle`);
    let outcome: Awaited<ReturnType<(typeof PHASES)[keyof typeof PHASES]>>;
    if (phase === 'baseline') {
      await sleep(activeSeconds * 1000);
      outcome = { actions: 'no faults', details: [], peakRssMiB: Number.NaN };
    } else {
      outcome = await PHASES[phase](ctx, activeSeconds);
    }
    await sleep(settleSeconds * 1000);
    await sampler.sample();
    const rssEndMiB = rssOf();
    results.push({
      phase,
      ...outcome,
      tally,
      rssStartMiB,
      rssPeakMiB: Math.max(...[outcome.peakRssMiB, rssStartMiB, rssEndMiB].filter(Number.isFinite)),
      rssEndMiB,
      server: await liveness(current),
    });
    log(
      `phase ${phase}: ${tally.lost} of ${tally.sent} owed finals lost so far; server ${results.at(-1)?.server}`,
    );
  }
  await load.stop();
  sampler.stop();
  const committed = total((t) => t.committedEvents);
  process.stdout.write(
    `${renderChaos({
      title: `Chaos: ${plan.phases.length} phases of ${plan.phaseSeconds} s under ${plan.streams} real-time streams`,
      settings: [
        ['model', setup.modelLabel],
        [
          'load',
          `${plan.streams} loops of ${plan.utterances}-utterance streams at ${plan.speed}× real time${plan.replies ? ', a SynthesizeText reply after each final' : ''}`,
        ],
        [
          'server',
          `bench/chaos-server.js --test-hooks, ${plan.workers} inference workers, drain_grace_seconds ${plan.drainGraceSeconds}, admission by capacity ${plan.maxFinalDelayMs === 0 ? 'off' : `at ${plan.maxFinalDelayMs} ms`}`,
        ],
        [
          'phases',
          `a ${plan.phaseSeconds - settleSeconds} s baseline, then faults for ${plan.phaseSeconds - settleSeconds} s and ${settleSeconds} s without, per phase`,
        ],
        ['machine', `${availableParallelism()} cores, node ${process.version}`],
      ],
      phases: results,
      samples: sampler.samples,
      loadAtStart,
      loadAtEnd: loadavg(),
      resume: !plan.resume
        ? 'off (--resume asks the SDK to resume streams after a drain or a reset)'
        : committed > 0
          ? `on: ${committed} AudioCommitted events, the server and SDK support resumable streams`
          : 'asked for, but no AudioCommitted event came: this SDK or server does not resume streams yet',
    })}\n`,
  );
  if (plan.json !== undefined) {
    const plain = results.map((result) => ({
      ...result,
      tally: { ...result.tally, errors: Object.fromEntries(result.tally.errors) },
    }));
    writeFileSync(plan.json, `${JSON.stringify({ phases: plain, samples: sampler.samples }, null, 2)}\n`);
  }
} finally {
  for (const server of servers) await server.service.stop();
  setup.cleanup();
}

/** "alive, SERVING (pid 123)", or how the process ended. */
async function liveness(current: Served): Promise<string> {
  const exit = current.service.exited();
  if (exit !== undefined) return `DIED: ${exit}`;
  try {
    const health = await current.service.client.health.check({ service: '' }, { timeoutMs: 5000 });
    return `alive, ${ServingStatus[health.status]} (pid ${current.service.pid})`;
  } catch (error) {
    return `alive (pid ${current.service.pid}) but health failed: ${error instanceof Error ? error.message : error}`;
  }
}
