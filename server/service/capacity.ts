/**
 * Admission by capacity: how much real-time audio the inference workers can keep up with, learned
 * from measured inference times, and whether one more live stream fits. Pure: time comes from an
 * injected clock, the pool's state from an injected function.
 *
 * What is learned
 * - Per model, the cost of one recognition (recognition-cost.ts): compute seconds = fixed +
 *   perSecond × audio seconds, seeded by the workers' start-up calibration and fitted over finished
 *   final recognitions (a recognition past 30 s of audio counts as 30 s).
 * - Across streams (stream-traffic.ts): the speech ratio r, seconds sent to final recognition per
 *   second of stream audio; the utterance length L's mean and second moment; the mean stream
 *   duration (for the retry hint); and the compute rate of other work that shares the workers and
 *   cannot be deferred (synthesis).
 *
 * The delay of a final
 * A real-time stream of model m sends utterances at λ = r / E[L] per second, each needing
 * S = a_m + b_m·L seconds of one worker. The streams' finals queue for c = performance.workers servers, with
 * the other work B (in busy workers) as further load: an M/G/c queue whose wait comes from the
 * Allen–Cunneen approximation (queueing.ts). The bound is a p95, so a final of model m is held to
 * D_m = Wq95 + E[S_m], with Wq95 the 95th percentile of the wait; past capacity (offered load
 * A ≥ c) D = ∞. Assumptions: finals are
 * served first-come first-served among themselves, ahead of synthesis and interims (their
 * priority); synthesis is counted as load of the same servers, which overstates the wait it causes
 * (it cannot overtake a final); interims are not counted: they are deferrable, and
 * `hasSpareCapacity` keeps them to spare capacity.
 *
 * Admission: a new stream is admitted when, with it, every model with admitted streams keeps
 * D_m ≤ bound (performance.max_final_delay_ms). A model whose own E[S_m] is past the bound cannot
 * meet it even on an idle server, so admission cannot push it past: its finals are held to
 * E[S_m] + bound instead (the bound becomes its queueing budget). A model with no known cost (no
 * calibration, no finished job) is admitted and counts as no load. Bound 0: everything is admitted,
 * the estimate is still kept.
 */
import {
  type CustomerClass,
  largestFitting,
  linearServiceMoments,
  type Moments,
  mixedQueueWait,
} from './queueing.js';
import { createRecognitionCosts, type LearnedCost, type RecognitionCost } from './recognition-cost.js';
import { createStreamTraffic, MAX_UTTERANCE_SECONDS } from './stream-traffic.js';

export type { RecognitionCost } from './recognition-cost.js';

/** The inference pool now: jobs waiting, and workers ready with no job. */
export interface PoolState {
  readonly queued: number;
  readonly idle: number;
}

export interface CapacityOptions {
  /** Inference workers (performance.workers). */
  readonly workers: number;
  /** performance.max_final_delay_ms; 0 turns refusals off. */
  readonly maxFinalDelayMs: number;
  /** Milliseconds on a monotonic clock; performance.now() by default. */
  readonly now?: () => number;
  /** The inference pool's state, for hasSpareCapacity; undefined while there is no pool. */
  readonly poolState?: () => PoolState | undefined;
  /** Load ratio above which interims are skipped; 0.6 by default. */
  readonly interimLoadLimit?: number;
}

/** Whether one more stream of a model fits, and the figures behind the answer. */
export interface Assessment {
  readonly admit: boolean;
  /** The model whose finals limit the answer (the new stream's when nothing is over). */
  readonly model: string;
  /** Expected delay of that model's finals with the new stream, in ms (Infinity past capacity). */
  readonly expectedDelayMs: number;
  /** What that model's finals are held to, in ms (0 when the bound is off). */
  readonly allowedDelayMs: number;
  /** False when the new stream's model has no known cost (it is admitted). */
  readonly known: boolean;
  /** When a refused stream might be admitted: the mean time until one of the streams ends. */
  readonly retryAfterMs: number;
}

/** One admitted stream; closing it (or disposing) removes its load. */
export interface CapacityStream extends Disposable {
  readonly model: string;
  /** Seconds of the stream's audio analysed. */
  audio(seconds: number): void;
  /** An utterance, `seconds` long, sent to final recognition. */
  utterance(seconds: number): void;
  /** Cheap: whether an interim recognition may start now (see CapacityEstimator.hasSpareCapacity). */
  hasSpareCapacity(): boolean;
  /** Idempotent. */
  close(): void;
}

export interface ModelCapacity {
  readonly model: string;
  readonly fixedSeconds: number;
  readonly secondsPerAudioSecond: number;
  readonly observedRecognitions: number;
  readonly admittedStreams: number;
  readonly expectedFinalDelayMs: number;
  readonly allowedFinalDelayMs: number;
  readonly capacityStreams: number;
  readonly availableStreams: number;
}

export interface CapacitySnapshot {
  readonly maxFinalDelayMs: number;
  readonly workers: number;
  readonly admittedStreams: number;
  readonly loadRatio: number;
  readonly speechRatio: number;
  readonly meanUtteranceSeconds: number;
  readonly refusedStreams: number;
  readonly models: readonly ModelCapacity[];
}

export interface CapacityEstimator {
  readonly maxFinalDelayMs: number;
  /** Seeds a model's cost (the start-up calibration); ignored once the model has finished jobs. */
  calibrate(model: string, cost: RecognitionCost): void;
  /** A finished final recognition: its audio and the compute seconds the worker measured. */
  observeRecognition(model: string, audioSeconds: number, computeSeconds: number): void;
  /** Compute seconds of other work on the same workers that cannot be deferred (synthesis). */
  observeBackground(computeSeconds: number): void;
  /** Whether one more stream of `model` fits; changes nothing. */
  assess(model: string): Assessment;
  /** Counts the stream as admitted (whatever `assess` said) until it is closed. */
  openStream(model: string): CapacityStream;
  /** Counts a refusal, for the snapshot. */
  refused(model: string): void;
  /**
   * Whether an interim may start now: no job waits for a worker and the load ratio is at most the
   * interim limit.
   */
  hasSpareCapacity(): boolean;
  /** The load ratio now: 0 idle, 1 or more past capacity. */
  loadRatio(): number;
  cost(model: string): RecognitionCost | undefined;
  snapshot(): CapacitySnapshot;
}

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;
const MAX_STREAMS = 1_000_000;

/** A stream mix: admitted streams per model. */
type Mix = ReadonlyMap<string, number>;

interface Load {
  readonly ratio: number;
  readonly waitSeconds: number;
  readonly serviceSeconds: (model: string) => number | undefined;
}

export function createCapacityEstimator(options: CapacityOptions): CapacityEstimator {
  const { workers, maxFinalDelayMs } = options;
  if (!Number.isInteger(workers) || workers < 1) throw new RangeError(`workers must be ≥ 1, got ${workers}`);
  const now = options.now ?? (() => performance.now());
  const interimLoadLimit = options.interimLoadLimit ?? 0.6;
  const costs = createRecognitionCosts();
  const admitted = new Map<string, number>();
  let streams = 0;
  let refusals = 0;
  const traffic = createStreamTraffic(now);

  function loadOf(mix: Mix, probe?: string): Load {
    const length = traffic.utteranceLength();
    const rate = traffic.speechRatio() / length.mean; // utterances per second of one stream
    const moments = (cost: RecognitionCost): Moments =>
      linearServiceMoments(cost.fixedSeconds, cost.perAudioSecond, length);
    const service = (model: string) => {
      const cost = costs.known(model);
      return cost === undefined ? undefined : moments(cost).mean;
    };
    const classes: CustomerClass[] = [];
    for (const [model, count] of mix) {
      const cost = costs.known(model);
      if (cost === undefined || count === 0) continue;
      classes.push({ rate: count * rate, service: moments(cost) });
    }
    // No stream yet: the wait a first final of `probe` would see behind the background work.
    const first = probe === undefined ? undefined : costs.known(probe);
    const alone = first === undefined ? { mean: 0, square: 0 } : moments(first);
    const queue = mixedQueueWait(workers, classes, traffic.backgroundLoad(), alone);
    return { ratio: queue.offered / workers, waitSeconds: queue.wait95, serviceSeconds: service };
  }

  /** What a model's finals are held to, in seconds, given its own service time. */
  function allowedSeconds(service: number): number {
    const bound = maxFinalDelayMs / 1000;
    return service < bound ? bound : service + bound;
  }

  /** The model most over (or nearest to) its bound in `mix`, with its delay and bound, in seconds. */
  function worst(
    mix: Mix,
    focus: string,
  ): { model: string; delay: number; allowed: number; within: boolean; ratio: number } {
    const load = loadOf(mix, focus);
    let result: { model: string; delay: number; allowed: number; within: boolean; ratio: number } | undefined;
    for (const [model, count] of mix) {
      const service = load.serviceSeconds(model);
      if (service === undefined || count === 0) continue;
      const delay = load.waitSeconds + service;
      const allowed = allowedSeconds(service);
      const within = maxFinalDelayMs === 0 ? load.ratio < 1 : delay <= allowed;
      const candidate = { model, delay, allowed, within, ratio: load.ratio };
      if (
        result === undefined ||
        (result.within && !within) ||
        (result.within === within && delay - allowed > result.delay - result.allowed)
      )
        result = candidate;
    }
    return result ?? { model: focus, delay: 0, allowed: allowedSeconds(0), within: true, ratio: load.ratio };
  }

  function withStreams(model: string, extra: number, base: Mix = admitted): Map<string, number> {
    const mix = new Map(base);
    mix.set(model, (mix.get(model) ?? 0) + extra);
    return mix;
  }

  function retryAfterMs(): number {
    const ms = (traffic.meanStreamSeconds() * 1000) / Math.max(1, streams);
    return Math.round(Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, ms)) / 100) * 100;
  }

  function assess(model: string): Assessment {
    const known = costs.known(model) !== undefined;
    const limit = worst(withStreams(model, 1), model);
    const allowedDelayMs = maxFinalDelayMs === 0 ? 0 : limit.allowed * 1000;
    return {
      // A server holding no stream admits one whatever the estimate: alone, a stream waits for
      // nobody, and refusing it would only make the service look down.
      admit: !known || maxFinalDelayMs === 0 || streams === 0 || limit.within,
      model: limit.model,
      expectedDelayMs: limit.delay * 1000,
      allowedDelayMs,
      known,
      retryAfterMs: retryAfterMs(),
    };
  }

  function hasSpareCapacity(): boolean {
    const pool = options.poolState?.();
    // With every worker busy but nothing waiting, an interim queues behind any final that comes
    // (lowest priority); only a queue, or a load past the limit, means finals need the capacity.
    if (pool !== undefined && pool.queued > 0) return false;
    return loadOf(admitted).ratio <= interimLoadLimit;
  }

  function openStream(model: string): CapacityStream {
    admitted.set(model, (admitted.get(model) ?? 0) + 1);
    streams += 1;
    const opened = now();
    let open = true;
    const close = () => {
      if (!open) return;
      open = false;
      streams -= 1;
      const left = (admitted.get(model) ?? 1) - 1;
      if (left === 0) admitted.delete(model);
      else admitted.set(model, left);
      traffic.streamEnded((now() - opened) / 1000);
    };
    return {
      model,
      audio: (seconds) => traffic.audio(seconds),
      utterance: (seconds) => traffic.utterance(seconds),
      hasSpareCapacity,
      close,
      [Symbol.dispose]: close,
    };
  }

  function modelCapacity({ model, cost, observed }: LearnedCost): ModelCapacity {
    const current = worst(withStreams(model, 0), model);
    const load = loadOf(withStreams(model, 0), model);
    const service = load.serviceSeconds(model) ?? 0;
    const fitsAlone = (n: number) => worst(new Map([[model, n]]), model).within;
    const fitsMore = (n: number) => worst(withStreams(model, n), model).within;
    return {
      model,
      fixedSeconds: cost.fixedSeconds,
      secondsPerAudioSecond: cost.perAudioSecond,
      observedRecognitions: observed,
      admittedStreams: admitted.get(model) ?? 0,
      expectedFinalDelayMs: (load.waitSeconds + service) * 1000,
      allowedFinalDelayMs: maxFinalDelayMs === 0 ? 0 : allowedSeconds(service) * 1000,
      capacityStreams: largestFitting(fitsAlone, MAX_STREAMS),
      availableStreams: current.within ? largestFitting(fitsMore, MAX_STREAMS) : 0,
    };
  }

  return {
    maxFinalDelayMs,

    calibrate: (model, cost) => costs.calibrate(model, cost),

    observeRecognition(model, audio, compute) {
      if (!(audio > 0) || !(compute >= 0)) return;
      costs.observe(model, Math.min(MAX_UTTERANCE_SECONDS, audio), compute);
    },

    observeBackground: (compute) => traffic.background(compute),

    assess,
    openStream,

    refused() {
      refusals += 1;
    },

    hasSpareCapacity,
    loadRatio: () => loadOf(admitted).ratio,
    cost: (model) => costs.known(model),

    snapshot() {
      const models = costs.learned().map(modelCapacity);
      return {
        maxFinalDelayMs,
        workers,
        admittedStreams: streams,
        loadRatio: loadOf(admitted).ratio,
        speechRatio: traffic.speechRatio(),
        meanUtteranceSeconds: traffic.utteranceLength().mean,
        refusedStreams: refusals,
        models,
      };
    },
  };
}
