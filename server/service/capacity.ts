/**
 * Admission by capacity: how much real-time audio the inference workers can keep up with, learned
 * from measured inference times, and whether one more live stream fits. Pure: time comes from an
 * injected clock, the pool's state from an injected function.
 *
 * What is learned
 * - Per model, the cost of one recognition: compute seconds = fixed + perSecond × audio seconds.
 *   Seeded by the workers' start-up calibration (1 s and 4 s timed after the warm-up), then fitted
 *   by least squares with exponential forgetting (each new job weighs 1, older ones ×0.97: a memory
 *   of ~30 jobs) over finished final recognitions. When the recent lengths are too alike to tell
 *   the two terms apart, the slope is kept and the fixed part follows the mean.
 * - Across streams: the speech ratio r, seconds sent to final recognition per second of stream
 *   audio (a prior of 1.0 worth 60 s of audio, observations forgotten with a 10-minute half-life,
 *   bounded to [0.2, 1.5]); the utterance length's mean and second moment (EWMA, prior 2 s ± 1 s);
 *   the mean stream duration (for the retry hint); and the compute rate of other work that shares
 *   the workers and cannot be deferred (synthesis), an exponentially weighted rate over ~30 s.
 *
 * The queueing model: M/G/c with the Allen–Cunneen approximation
 * A real-time stream of model m sends utterances at λ = r / E[L] per second, each needing
 * S = a_m + b_m·L seconds of one worker. The utterances of many independent streams superpose to
 * nearly Poisson arrivals (Ca² = 1); service times vary with the length and across models
 * (Cs² = E[S²] / E[S]² − 1 over the mix). With c = performance.workers servers and the offered load
 * A = Σ λ·E[S] + B (B: the other work, in busy workers), the wait before a final starts is
 *     Wq ≈ ErlangC(c, A) · E[S] / (c − A) · (1 + Cs²) / 2,
 * exact for M/M/c (Cs² = 1), the standard approximation for M/D/c (Cs² = 0, Whisper's fixed cost)
 * and M/G/c; a final of model m is expected D_m = Wq + E[S_m] after its utterance ends. A ≥ c: the
 * server cannot keep up, D = ∞. Assumptions: finals are served first-come first-served among
 * themselves, ahead of synthesis and interims (their priority); synthesis is counted as load of the
 * same servers, which overstates the wait it causes (it cannot overtake a final); interims are not
 * counted: they are deferrable, and `shouldRunInterim` keeps them to spare capacity.
 *
 * Admission: a new stream is admitted when, with it, every model with admitted streams keeps
 * D_m ≤ bound (performance.max_final_delay_ms). A model whose own E[S_m] is past the bound cannot
 * meet it even on an idle server, so admission cannot push it past: its finals are held to
 * E[S_m] + bound instead (the bound becomes its queueing budget). A model with no known cost (no
 * calibration, no finished job) is admitted and counts as no load. Bound 0: everything is admitted,
 * the estimate is still kept.
 */

export interface RecognitionCost {
  /** Compute seconds of a recognition whatever its length. */
  readonly fixedSeconds: number;
  /** Compute seconds per second of audio. */
  readonly perAudioSecond: number;
}

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
  /** The inference pool's state, for shouldRunInterim; undefined while there is no pool. */
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
  /** Cheap: whether an interim recognition may start now (see CapacityEstimator.shouldRunInterim). */
  shouldRunInterim(): boolean;
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
  shouldRunInterim(): boolean;
  /** The load ratio now: 0 idle, 1 or more past capacity. */
  loadRatio(): number;
  cost(model: string): RecognitionCost | undefined;
  snapshot(): CapacitySnapshot;
}

const FORGET = 0.97;
const CALIBRATION_WEIGHT = 3;
/** Below this weighted variance of lengths (s²) the slope cannot be fitted and is kept. */
const MIN_LENGTH_VARIANCE = 0.05;
const MAX_UTTERANCE_SECONDS = 30;

const SPEECH_PRIOR = 1;
const SPEECH_PRIOR_SECONDS = 60;
const SPEECH_HALF_LIFE_MS = 10 * 60_000;
const SPEECH_FLOOR = 0.2;
const SPEECH_CEILING = 1.5;

const UTTERANCE_PRIOR_SECONDS = 2;
const UTTERANCE_PRIOR_SD = 1;
const UTTERANCE_ALPHA = 0.05;
const UTTERANCE_FLOOR_SECONDS = 0.25;

const STREAM_PRIOR_SECONDS = 60;
const STREAM_ALPHA = 0.1;
const BACKGROUND_TAU_MS = 30_000;

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;
const MAX_STREAMS = 1_000_000;

/** Erlang C: the probability that an arrival waits, c servers, offered load `offered` (< c). */
export function erlangC(servers: number, offered: number): number {
  if (offered <= 0) return 0;
  if (offered >= servers) return 1;
  let blocking = 1; // Erlang B, by its recursion over the servers
  for (let k = 1; k <= servers; k++) blocking = (offered * blocking) / (k + offered * blocking);
  return (servers * blocking) / (servers - offered * (1 - blocking));
}

/**
 * Allen–Cunneen's mean wait in an M/G/c queue, in the unit of `meanService`: `offered` is the load
 * in busy servers, `serviceScv` the squared coefficient of variation of the service time.
 */
export function meanWait(servers: number, offered: number, meanService: number, serviceScv: number): number {
  if (offered <= 0) return 0;
  if (offered >= servers) return Number.POSITIVE_INFINITY;
  return ((erlangC(servers, offered) * meanService) / (servers - offered)) * ((1 + serviceScv) / 2);
}

interface CostModel {
  // Exponentially forgotten sums: weight, x, x², y, x·y (x = audio seconds, y = compute seconds).
  w: number;
  x: number;
  xx: number;
  y: number;
  xy: number;
  observed: number;
  cost: RecognitionCost;
}

function emptyCost(): CostModel {
  return { w: 0, x: 0, xx: 0, y: 0, xy: 0, observed: 0, cost: { fixedSeconds: 0, perAudioSecond: 0 } };
}

function addPoint(model: CostModel, x: number, y: number, weight: number): void {
  model.w = model.w * FORGET + weight;
  model.x = model.x * FORGET + weight * x;
  model.xx = model.xx * FORGET + weight * x * x;
  model.y = model.y * FORGET + weight * y;
  model.xy = model.xy * FORGET + weight * x * y;
}

/** Least squares with both terms kept ≥ 0; the previous slope when the lengths are too alike. */
function fit(model: CostModel): RecognitionCost {
  const meanX = model.x / model.w;
  const meanY = model.y / model.w;
  const varX = model.xx / model.w - meanX * meanX;
  let slope = model.cost.perAudioSecond;
  if (varX > MIN_LENGTH_VARIANCE) slope = (model.xy / model.w - meanX * meanY) / varX;
  slope = Math.max(0, slope);
  let fixed = meanY - slope * meanX;
  if (fixed < 0) {
    fixed = 0;
    slope = model.xx > 0 ? Math.max(0, model.xy / model.xx) : 0;
  }
  return { fixedSeconds: fixed, perAudioSecond: slope };
}

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
  const costs = new Map<string, CostModel>();
  const admitted = new Map<string, number>();
  let streams = 0;
  let refusals = 0;
  // Speech ratio: forgotten sums of utterance and audio seconds.
  let speechSeconds = 0;
  let audioSeconds = 0;
  let speechAt = now();
  let utteranceMean = UTTERANCE_PRIOR_SECONDS;
  let utteranceSquare = UTTERANCE_PRIOR_SECONDS ** 2 + UTTERANCE_PRIOR_SD ** 2;
  let streamSeconds = STREAM_PRIOR_SECONDS;
  let background = 0;
  let backgroundAt = now();

  function forgetSpeech(): void {
    const t = now();
    const factor = 0.5 ** ((t - speechAt) / SPEECH_HALF_LIFE_MS);
    speechSeconds *= factor;
    audioSeconds *= factor;
    speechAt = t;
  }

  function speechRatio(): number {
    forgetSpeech();
    const ratio =
      (speechSeconds + SPEECH_PRIOR * SPEECH_PRIOR_SECONDS) / (audioSeconds + SPEECH_PRIOR_SECONDS);
    return Math.min(SPEECH_CEILING, Math.max(SPEECH_FLOOR, ratio));
  }

  /** Busy workers taken by background work: an exponentially weighted rate. */
  function backgroundLoad(): number {
    const t = now();
    background *= Math.exp(-(t - backgroundAt) / BACKGROUND_TAU_MS);
    backgroundAt = t;
    return (background * 1000) / BACKGROUND_TAU_MS;
  }

  function knownCost(model: string): RecognitionCost | undefined {
    const entry = costs.get(model);
    return entry === undefined || entry.w === 0 ? undefined : entry.cost;
  }

  function loadOf(mix: Mix, probe?: string): Load {
    const meanLength = Math.max(UTTERANCE_FLOOR_SECONDS, utteranceMean);
    const squareLength = Math.max(utteranceSquare, meanLength * meanLength);
    const rate = speechRatio() / meanLength; // utterances per second of one stream
    const service = (model: string) => {
      const cost = knownCost(model);
      return cost === undefined ? undefined : cost.fixedSeconds + cost.perAudioSecond * meanLength;
    };
    const serviceSquare = (cost: RecognitionCost) =>
      cost.fixedSeconds ** 2 +
      2 * cost.fixedSeconds * cost.perAudioSecond * meanLength +
      cost.perAudioSecond ** 2 * squareLength;
    let arrivals = 0;
    let work = 0;
    let square = 0;
    for (const [model, count] of mix) {
      const cost = knownCost(model);
      if (cost === undefined || count === 0) continue;
      arrivals += count * rate;
      work += count * rate * (cost.fixedSeconds + cost.perAudioSecond * meanLength);
      square += count * rate * serviceSquare(cost);
    }
    const offered = work + backgroundLoad();
    let meanService: number;
    let meanSquare: number;
    if (arrivals > 0) {
      meanService = work / arrivals;
      meanSquare = square / arrivals;
    } else {
      // No stream yet: the wait a first final of `probe` would see behind the background work.
      const cost = probe === undefined ? undefined : knownCost(probe);
      meanService = cost === undefined ? 0 : cost.fixedSeconds + cost.perAudioSecond * meanLength;
      meanSquare = cost === undefined ? 0 : serviceSquare(cost);
    }
    const scv = meanService > 0 ? Math.max(0, meanSquare / meanService ** 2 - 1) : 0;
    const waitSeconds =
      offered >= workers ? Number.POSITIVE_INFINITY : meanWait(workers, offered, meanService, scv);
    return { ratio: offered / workers, waitSeconds, serviceSeconds: service };
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

  /** Largest n ≥ 0 for which `fits(n)` holds; `fits` is monotone (true up to some n). */
  function largest(fits: (n: number) => boolean): number {
    if (!fits(1)) return 0;
    let low = 1;
    let high = 2;
    while (high <= MAX_STREAMS && fits(high)) {
      low = high;
      high *= 2;
    }
    if (high > MAX_STREAMS) return MAX_STREAMS;
    while (high - low > 1) {
      const middle = Math.floor((low + high) / 2);
      if (fits(middle)) low = middle;
      else high = middle;
    }
    return low;
  }

  function retryAfterMs(): number {
    const ms = (streamSeconds * 1000) / Math.max(1, streams);
    return Math.round(Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, ms)) / 100) * 100;
  }

  function assess(model: string): Assessment {
    const known = knownCost(model) !== undefined;
    const limit = worst(withStreams(model, 1), model);
    const allowedDelayMs = maxFinalDelayMs === 0 ? 0 : limit.allowed * 1000;
    return {
      admit: !known || maxFinalDelayMs === 0 || limit.within,
      model: limit.model,
      expectedDelayMs: limit.delay * 1000,
      allowedDelayMs,
      known,
      retryAfterMs: retryAfterMs(),
    };
  }

  function shouldRunInterim(): boolean {
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
      streamSeconds += STREAM_ALPHA * ((now() - opened) / 1000 - streamSeconds);
    };
    return {
      model,
      audio(seconds) {
        if (!(seconds > 0)) return;
        forgetSpeech();
        audioSeconds += seconds;
      },
      utterance(seconds) {
        if (!(seconds > 0)) return;
        forgetSpeech();
        speechSeconds += seconds;
        const length = Math.min(MAX_UTTERANCE_SECONDS, seconds);
        utteranceMean += UTTERANCE_ALPHA * (length - utteranceMean);
        utteranceSquare += UTTERANCE_ALPHA * (length * length - utteranceSquare);
      },
      shouldRunInterim,
      close,
      [Symbol.dispose]: close,
    };
  }

  function modelCapacity(model: string, entry: CostModel): ModelCapacity {
    const current = worst(withStreams(model, 0), model);
    const load = loadOf(withStreams(model, 0), model);
    const service = load.serviceSeconds(model) ?? 0;
    const fitsAlone = (n: number) => worst(new Map([[model, n]]), model).within;
    const fitsMore = (n: number) => worst(withStreams(model, n), model).within;
    return {
      model,
      fixedSeconds: entry.cost.fixedSeconds,
      secondsPerAudioSecond: entry.cost.perAudioSecond,
      observedRecognitions: entry.observed,
      admittedStreams: admitted.get(model) ?? 0,
      expectedFinalDelayMs: (load.waitSeconds + service) * 1000,
      allowedFinalDelayMs: maxFinalDelayMs === 0 ? 0 : allowedSeconds(service) * 1000,
      capacityStreams: largest(fitsAlone),
      availableStreams: current.within ? largest(fitsMore) : 0,
    };
  }

  return {
    maxFinalDelayMs,

    calibrate(model, cost) {
      const entry = costs.get(model) ?? emptyCost();
      if (entry.observed > 0) return;
      const fresh = emptyCost();
      fresh.cost = {
        fixedSeconds: Math.max(0, cost.fixedSeconds),
        perAudioSecond: Math.max(0, cost.perAudioSecond),
      };
      for (const x of [1, 4]) {
        addPoint(fresh, x, fresh.cost.fixedSeconds + fresh.cost.perAudioSecond * x, CALIBRATION_WEIGHT);
      }
      costs.set(model, fresh);
    },

    observeRecognition(model, audio, compute) {
      if (!(audio > 0) || !(compute >= 0)) return;
      let entry = costs.get(model);
      if (entry === undefined) {
        entry = emptyCost();
        costs.set(model, entry);
      }
      addPoint(entry, Math.min(MAX_UTTERANCE_SECONDS, audio), compute, 1);
      entry.observed += 1;
      entry.cost = fit(entry);
    },

    observeBackground(compute) {
      if (!(compute > 0)) return;
      backgroundLoad();
      background += compute;
    },

    assess,
    openStream,

    refused() {
      refusals += 1;
    },

    shouldRunInterim,
    loadRatio: () => loadOf(admitted).ratio,
    cost: (model) => knownCost(model),

    snapshot() {
      const models: ModelCapacity[] = [];
      for (const [model, entry] of costs) if (entry.w > 0) models.push(modelCapacity(model, entry));
      return {
        maxFinalDelayMs,
        workers,
        admittedStreams: streams,
        loadRatio: loadOf(admitted).ratio,
        speechRatio: speechRatio(),
        meanUtteranceSeconds: Math.max(UTTERANCE_FLOOR_SECONDS, utteranceMean),
        refusedStreams: refusals,
        models,
      };
    },
  };
}
