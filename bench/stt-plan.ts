/** What one run of the benchmark does: levels, utterances per stream, time bounds; from the command line. */
import { parseArgs } from 'node:util';
import { SAMPLE_RATE } from './stt-audio.js';
import { MODEL_KEYS, type ModelKey, parseModelKeys } from './stt-models.js';

export interface Plan {
  readonly quick: boolean;
  readonly models: readonly ModelKey[];
  /** Concurrent real-time streams per run. */
  readonly levels: readonly number[];
  /** Utterances per stream at a level (one stream gets more, for its p95). */
  readonly utterancesAt: (streams: number) => number;
  /** Search between levels for the largest number of streams held (full form). */
  readonly search: boolean;
  /** The speech-ended → final bound (p95) a run must keep to count as held, ms. */
  readonly boundMs: number;
  /** A run is cancelled this long after its last stream's audio should have ended. */
  readonly graceSeconds: number;
  /** (a) recognises the utterances in whole rounds until at least this many seconds have passed. */
  readonly directMinSeconds: number;
  readonly directMaxRounds: number;
  /** Inference workers of the server, and threads of (a). */
  readonly workers: number;
  readonly chunkMs: number;
  readonly chunkSamples: number;
  /** Chunks of the unpaced capacity runs: 32 VAD frames of 32 ms, the most one VAD call takes. */
  readonly capacityChunkSamples: number;
  readonly json: string | undefined;
}

const QUICK_LEVELS = [1, 20, 50, 100];
const FULL_LEVELS = [1, 10, 20, 30, 40, 50, 60, 80, 100];

export function parsePlan(argv: readonly string[]): Plan {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean', default: false },
      models: { type: 'string', default: MODEL_KEYS.join(',') },
      levels: { type: 'string' },
      utterances: { type: 'string' },
      'no-search': { type: 'boolean', default: false },
      'chunk-ms': { type: 'string', default: '40' },
      json: { type: 'string' },
    },
  });
  const quick = values.quick === true;
  const levels =
    values.levels === undefined
      ? quick
        ? QUICK_LEVELS
        : FULL_LEVELS
      : intList('--levels', values.levels, 1, 1000);
  const utterances =
    values.utterances === undefined ? undefined : intList('--utterances', values.utterances, 1, 100)[0];
  const chunkMs = Number(values['chunk-ms']);
  if (!Number.isInteger(chunkMs) || chunkMs < 10 || chunkMs > 200) {
    throw new RangeError(`--chunk-ms: an integer from 10 to 200, got ${values['chunk-ms']}`);
  }
  return {
    quick,
    models: parseModelKeys(values.models),
    levels: [...new Set(levels)].sort((a, b) => a - b),
    utterancesAt: (streams) => utterances ?? (quick ? (streams === 1 ? 3 : 2) : streams === 1 ? 12 : 5),
    search: !quick && values['no-search'] !== true && values.levels === undefined,
    boundMs: 500,
    graceSeconds: quick ? 6 : 20,
    directMinSeconds: quick ? 4 : 20,
    directMaxRounds: quick ? 12 : 40,
    workers: 2,
    chunkMs,
    chunkSamples: (chunkMs * SAMPLE_RATE) / 1000,
    capacityChunkSamples: 32 * 512,
    json: values.json,
  };
}

function intList(flag: string, text: string, min: number, max: number): number[] {
  const list = text.split(',').map(Number);
  if (list.length === 0 || list.some((value) => !Number.isInteger(value) || value < min || value > max)) {
    throw new RangeError(`${flag}: a list of integers from ${min} to ${max}, got ${text}`);
  }
  return list;
}
