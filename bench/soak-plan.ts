/** Command-line flags of `npm run soak` and `npm run chaos`. */
import { parseArgs } from 'node:util';

export const SOAK_MODELS = ['moonshine-tiny', 'moonshine-base', 'whisper-tiny', 'minimal'] as const;
export type SoakModel = (typeof SOAK_MODELS)[number];

/** What both runs share: the load and the server. */
export interface LoadPlan {
  readonly streams: number;
  readonly utterances: number;
  readonly model: SoakModel;
  readonly speed: number;
  readonly chunkMs: number;
  readonly workers: number;
  readonly replies: boolean;
  readonly resume: boolean;
  readonly sampleSeconds: number;
  /** performance.max_final_delay_ms for the server; 0 (the default here) turns admission by capacity off. */
  readonly maxFinalDelayMs: number;
  /** performance.tts_cache_mb for the server; undefined keeps its default. */
  readonly ttsCacheMb: number | undefined;
  readonly json: string | undefined;
  readonly execArgv: readonly string[];
}

export interface SoakPlan extends LoadPlan {
  readonly minutes: number;
  readonly warmupMinutes: number;
  /** A folder for heap snapshots of the server's main thread after warm-up and at the end. */
  readonly heapSnapshots: string | undefined;
  /** Sample each model worker thread's heap too (turns the workers' test-only job kinds on). */
  readonly workerMemory: boolean;
}

export const CHAOS_PHASES = ['workers', 'drain', 'slow-readers', 'resets'] as const;
export type ChaosPhase = (typeof CHAOS_PHASES)[number];

export interface ChaosPlan extends LoadPlan {
  readonly phases: readonly ChaosPhase[];
  readonly phaseSeconds: number;
  /** Mean seconds between two worker kills in the `workers` phase. */
  readonly crashEverySeconds: number;
  readonly slowReaders: number;
  readonly resets: number;
  readonly drainGraceSeconds: number;
}

const LOAD_OPTIONS = {
  streams: { type: 'string', default: '6' },
  utterances: { type: 'string', default: '4' },
  model: { type: 'string', default: 'moonshine-tiny' },
  speed: { type: 'string', default: '1' },
  'chunk-ms': { type: 'string', default: '100' },
  workers: { type: 'string', default: '2' },
  'no-replies': { type: 'boolean', default: false },
  resume: { type: 'boolean', default: false },
  'sample-seconds': { type: 'string', default: '5' },
  'max-final-delay-ms': { type: 'string', default: '0' },
  'tts-cache-mb': { type: 'string' },
  json: { type: 'string' },
  'node-option': { type: 'string', multiple: true },
} as const;

function number(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new RangeError(`--${flag}: a number from ${min} to ${max}; got ${text}`);
  }
  return value;
}

function loadPlan(values: {
  streams: string;
  utterances: string;
  model: string;
  speed: string;
  'chunk-ms': string;
  workers: string;
  'no-replies': boolean;
  resume: boolean;
  'sample-seconds': string;
  'max-final-delay-ms': string;
  'tts-cache-mb'?: string | undefined;
  json?: string | undefined;
  'node-option'?: string[] | undefined;
}): LoadPlan {
  if (!(SOAK_MODELS as readonly string[]).includes(values.model)) {
    throw new RangeError(`--model: one of ${SOAK_MODELS.join(', ')}; got ${values.model}`);
  }
  return {
    streams: Math.round(number('streams', values.streams, 1, 500)),
    utterances: Math.round(number('utterances', values.utterances, 1, 50)),
    model: values.model as SoakModel,
    speed: number('speed', values.speed, 0.25, 20),
    chunkMs: number('chunk-ms', values['chunk-ms'], 10, 1000),
    workers: Math.round(number('workers', values.workers, 1, 16)),
    replies: !values['no-replies'],
    resume: values.resume,
    sampleSeconds: number('sample-seconds', values['sample-seconds'], 1, 600),
    maxFinalDelayMs: Math.round(number('max-final-delay-ms', values['max-final-delay-ms'], 0, 60_000)),
    ttsCacheMb:
      values['tts-cache-mb'] === undefined
        ? undefined
        : Math.round(number('tts-cache-mb', values['tts-cache-mb'], 0, 16_384)),
    json: values.json,
    execArgv: values['node-option'] ?? [],
  };
}

export function parseSoakPlan(argv: readonly string[]): SoakPlan {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...LOAD_OPTIONS,
      minutes: { type: 'string', default: '10' },
      'warmup-minutes': { type: 'string', default: '1' },
      'heap-snapshots': { type: 'string' },
      'worker-memory': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const minutes = number('minutes', values.minutes, 0.25, 24 * 60);
  return {
    ...loadPlan(values),
    minutes,
    warmupMinutes: Math.min(number('warmup-minutes', values['warmup-minutes'], 0, 60), minutes / 2),
    heapSnapshots: values['heap-snapshots'],
    workerMemory: values['worker-memory'],
  };
}

export function parseChaosPlan(argv: readonly string[]): ChaosPlan {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...LOAD_OPTIONS,
      phases: { type: 'string', default: CHAOS_PHASES.join(',') },
      'phase-seconds': { type: 'string', default: '60' },
      'crash-every-seconds': { type: 'string', default: '6' },
      'slow-readers': { type: 'string', default: '8' },
      resets: { type: 'string', default: '20' },
      'drain-grace-seconds': { type: 'string', default: '5' },
    },
    strict: true,
  });
  const phases = values.phases.split(',').map((phase) => phase.trim());
  const unknown = phases.filter((phase) => !(CHAOS_PHASES as readonly string[]).includes(phase));
  if (unknown.length > 0 || phases.length === 0) {
    throw new RangeError(`--phases: a list of ${CHAOS_PHASES.join(', ')}; got ${values.phases}`);
  }
  return {
    ...loadPlan(values),
    phases: phases as ChaosPhase[],
    phaseSeconds: number('phase-seconds', values['phase-seconds'], 10, 3600),
    crashEverySeconds: number('crash-every-seconds', values['crash-every-seconds'], 0.5, 600),
    slowReaders: Math.round(number('slow-readers', values['slow-readers'], 0, 200)),
    resets: Math.round(number('resets', values.resets, 0, 1000)),
    drainGraceSeconds: Math.round(number('drain-grace-seconds', values['drain-grace-seconds'], 0, 120)),
  };
}
