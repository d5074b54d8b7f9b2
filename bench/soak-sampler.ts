/**
 * Samples the server every few seconds: RSS of the whole process (main thread, model worker
 * threads, onnxruntime arenas; from /proc), the main thread's heap, handles and event-loop delay
 * (bench/chaos-server.ts over IPC), streams and queue from its /metrics, and the client's counts.
 */
import { loadavg } from 'node:os';
import type { ServerControl } from './chaos-control.js';
import type { RunningService } from './stt-service.js';
import { memoryOf } from './stt-stats.js';

export interface Sample {
  /** Seconds since the sampler started. */
  readonly at: number;
  readonly pid: number;
  readonly rssMiB: number;
  readonly heapUsedMiB: number;
  readonly heapTotalMiB: number;
  readonly externalMiB: number;
  readonly arrayBuffersMiB: number;
  /** Audio the sentence cache holds: main-thread external memory that fills up to performance.tts_cache_mb. */
  readonly ttsCacheMiB: number;
  /** The model worker threads' heaps and external memory, summed (NaN unless asked for). */
  readonly workerHeapMiB: number;
  readonly workerExternalMiB: number;
  /** Handles keeping the server's loop alive (sockets, timers, worker ports…). */
  readonly handles: number;
  /** Event-loop delay over the interval since the previous sample, ms. */
  readonly loopP99Ms: number;
  readonly activeStreams: number;
  readonly queueDepth: number;
  /** The client's running totals. */
  readonly streams: number;
  readonly finals: number;
  readonly replies: number;
  readonly load1: number;
}

export interface ClientCounts {
  readonly streams: number;
  readonly finals: number;
  readonly replies: number;
}

export interface Served {
  readonly service: RunningService;
  readonly control: ServerControl;
}

export interface Sampler {
  readonly samples: Sample[];
  /** Takes one sample now (also between the periodic ones, e.g. at a phase boundary). */
  sample(): Promise<Sample | undefined>;
  stop(): void;
}

const MiB = 1024 * 1024;

export function startSampler(
  served: () => Served | undefined,
  counts: () => ClientCounts,
  everyMs: number,
  options: { readonly workers?: boolean } = {},
): Sampler {
  const started = performance.now();
  const samples: Sample[] = [];
  const sample = async (): Promise<Sample | undefined> => {
    const current = served();
    if (current === undefined || current.service.exited() !== undefined) return undefined;
    const { service, control } = current;
    try {
      const [stats, metrics] = await Promise.all([control.stats(options.workers === true), service.scrape()]);
      const client = counts();
      const taken: Sample = {
        at: (performance.now() - started) / 1000,
        pid: service.pid,
        rssMiB: memoryOf(service.pid).rssMiB,
        heapUsedMiB: stats.heapUsedBytes / MiB,
        heapTotalMiB: stats.heapTotalBytes / MiB,
        externalMiB: stats.externalBytes / MiB,
        arrayBuffersMiB: stats.arrayBuffersBytes / MiB,
        ttsCacheMiB: stats.ttsCacheBytes / MiB,
        workerHeapMiB: sumOf(stats.workers, (worker) => worker.heapUsed) / MiB,
        workerExternalMiB: sumOf(stats.workers, (worker) => worker.external) / MiB,
        handles: metrics.value('nodejs_active_handles_total'),
        loopP99Ms: stats.loopDelayP99Ms,
        activeStreams: metrics.value('voice_active_streams'),
        queueDepth: metrics.value('voice_worker_queue_depth'),
        streams: client.streams,
        finals: client.finals,
        replies: client.replies,
        load1: loadavg()[0] ?? Number.NaN,
      };
      samples.push(taken);
      return taken;
    } catch {
      // The server is stopping or restarting: no sample this time.
      return undefined;
    }
  };
  const timer = setInterval(() => void sample(), everyMs);
  return { samples, sample, stop: () => clearInterval(timer) };
}

function sumOf<T>(items: readonly T[] | undefined, pick: (item: T) => number): number {
  if (items === undefined || items.length === 0) return Number.NaN;
  return items.reduce((total, item) => total + pick(item), 0);
}
