/**
 * The learned cost of one recognition, per model: compute seconds = fixed + perSecond × audio
 * seconds. Seeded by the workers' start-up calibration (1 s and 4 s timed after the warm-up), then
 * fitted by least squares with exponential forgetting (each new job weighs 1, older ones ×0.97: a
 * memory of ~30 jobs) over finished final recognitions. When the recent lengths are too alike to tell
 * the two terms apart, the slope is kept and the fixed part follows the mean.
 */

export interface RecognitionCost {
  /** Compute seconds of a recognition whatever its length. */
  readonly fixedSeconds: number;
  /** Compute seconds per second of audio. */
  readonly perAudioSecond: number;
}

/** A model's fitted cost and how many finished recognitions it was fitted to. */
export interface LearnedCost {
  readonly model: string;
  readonly cost: RecognitionCost;
  readonly observed: number;
}

export interface RecognitionCosts {
  /** Seeds a model's cost (the start-up calibration); ignored once the model has finished jobs. */
  calibrate(model: string, cost: RecognitionCost): void;
  /** One finished recognition: its audio and compute seconds, both taken as given. */
  observe(model: string, audioSeconds: number, computeSeconds: number): void;
  /** The model's cost; undefined with no calibration and no finished job. */
  known(model: string): RecognitionCost | undefined;
  /** Every model with a known cost, in the order they were first seen. */
  learned(): LearnedCost[];
}

const FORGET = 0.97;
const CALIBRATION_WEIGHT = 3;
/** Below this weighted variance of lengths (s²) the slope cannot be fitted and is kept. */
const MIN_LENGTH_VARIANCE = 0.05;

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

export function createRecognitionCosts(): RecognitionCosts {
  const costs = new Map<string, CostModel>();
  return {
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

    observe(model, audioSeconds, computeSeconds) {
      let entry = costs.get(model);
      if (entry === undefined) {
        entry = emptyCost();
        costs.set(model, entry);
      }
      addPoint(entry, audioSeconds, computeSeconds, 1);
      entry.observed += 1;
      entry.cost = fit(entry);
    },

    known(model) {
      const entry = costs.get(model);
      return entry === undefined || entry.w === 0 ? undefined : entry.cost;
    },

    learned() {
      const models: LearnedCost[] = [];
      for (const [model, entry] of costs) {
        if (entry.w > 0) models.push({ model, cost: entry.cost, observed: entry.observed });
      }
      return models;
    },
  };
}
