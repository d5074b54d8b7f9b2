/**
 * (b) The service end to end: the real server (dist/server/main.js) as a child process on
 * 127.0.0.1 with ephemeral ports, driven over gRPC by the Node client.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { createVoiceClient, ServingStatus, type VoiceClient } from '../clients/node/index.js';
import { ENV_OVERRIDES } from '../server/config.js';

export interface ServerSettings {
  readonly cacheDir: string;
  readonly modelId: string;
  readonly workers: number;
  /** performance.max_final_delay_ms; undefined keeps the server's default. */
  readonly maxFinalDelayMs?: number | undefined;
  /** models.stt.speculative_finals; undefined keeps the server's default. */
  readonly speculativeFinals?: boolean | undefined;
}

/**
 * The server's config for one generated model: the model serves every stream (default and English
 * model alike), nothing is downloaded, one onnxruntime thread per worker. Per-client rate limits and
 * the cap on calls in progress are lifted: every stream comes from one address, and admission by
 * capacity is what is measured.
 */
export function benchConfig(settings: ServerSettings): Record<string, unknown> {
  return {
    // Ephemeral ports for gRPC and the web port too: runs side by side must not collide on 8080.
    service: { host: '127.0.0.1', port: 0, web_port: 0, drain_grace_seconds: 2 },
    models: {
      cache_dir: settings.cacheDir,
      allow_downloads: false,
      stt: {
        model: settings.modelId,
        english_model: settings.modelId,
        dtype: 'fp32',
        language: 'en',
        ...(settings.speculativeFinals === undefined
          ? {}
          : { speculative_finals: settings.speculativeFinals }),
      },
    },
    performance: {
      workers: settings.workers,
      inference_threads: 1,
      max_concurrent_requests: 10_000,
      ...(settings.maxFinalDelayMs === undefined ? {} : { max_final_delay_ms: settings.maxFinalDelayMs }),
    },
    logging: { level: 'info', format: 'json', output: 'stdout' },
    monitoring: { host: '127.0.0.1', prometheus_port: 0 },
    security: { rate_limit: { enabled: false } },
  };
}

/** This process's environment without the variables that would override the server's config. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const { variable } of ENV_OVERRIDES) delete env[variable];
  delete env.VOICE_CONFIG;
  return env;
}

export interface RunningService {
  readonly pid: number;
  /** The ports the server bound (a restarted server can ask for the same gRPC port). */
  readonly grpcPort: number;
  readonly metricsPort: number;
  readonly client: VoiceClient;
  readonly metricsUrl: string;
  /** Seconds from spawn until the engines were loaded and health said SERVING. */
  readonly startSeconds: number;
  /** How the server process ended ("exit code 134", "signal SIGKILL"), or undefined while it runs. */
  exited(): string | undefined;
  /** Settles with how the process ended ("exit code 0", "signal SIGKILL"). */
  readonly ended: Promise<string>;
  /** Sends a message over the IPC channel (only with `launch.ipc`); false when it is gone. */
  send(message: unknown): boolean;
  /** The IPC messages the server sends back (only with `launch.ipc`). */
  onMessage(listener: (message: unknown) => void): void;
  /** Sends a signal to the server process alone. */
  kill(signal: NodeJS.Signals): void;
  scrape(): Promise<MetricsSnapshot>;
  stop(): Promise<void>;
}

/** How to run the server process: another entry than server/main.js, node flags, an IPC channel. */
export interface Launch {
  /** The entry script (default: dist/server/main.js); it must log "listening" and "engines loaded" as main does. */
  readonly script?: string;
  readonly execArgv?: readonly string[];
  /** Arguments after `--config <file>`. */
  readonly args?: readonly string[];
  readonly ipc?: boolean;
}

/** Starts `node <dist>/server/main.js --config <file>` with the given config sections. */
export async function startService(
  sections: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  launch: Launch = {},
): Promise<RunningService> {
  const dir = mkdtempSync(join(tmpdir(), 'voice-bench-config-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, stringify(sections));
  // BENCH_SERVER_LOG=file keeps the server's log lines, for looking into a run afterwards.
  const serverLog = process.env.BENCH_SERVER_LOG;
  const main = launch.script ?? fileURLToPath(new URL('../server/main.js', import.meta.url));
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [...(launch.execArgv ?? []), main, '--config', file, ...(launch.args ?? [])],
    {
      stdio: launch.ipc === true ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
      env,
    },
  );
  const ended = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal === null ? `exit code ${code}` : `signal ${signal}`));
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('the server process did not start');
  const stderr: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr.push(text);
    if (stderr.length > 50) stderr.shift();
  });

  const ports = await new Promise<{ grpcPort: number; metricsPort: number }>((resolve, reject) => {
    let grpcPort: number | undefined;
    let metricsPort: number | undefined;
    const timer = setTimeout(
      () => reject(new Error('the server did not load its engines in 120 s')),
      120_000,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code} while starting: ${stderr.join('').slice(-2000)}`));
    });
    // The server's JSON log lines must be read all the time, or a full pipe would stall it.
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (serverLog !== undefined) appendFileSync(serverLog, `${line}\n`);
      let record: {
        msg?: string;
        grpcPort?: number;
        metricsPort?: number;
        level?: string;
        engine?: string;
        reason?: string;
      };
      try {
        record = JSON.parse(line);
      } catch {
        return;
      }
      if (record.msg === 'listening') ({ grpcPort, metricsPort } = record);
      if (record.level === 'error' && record.msg?.startsWith('model workers failed to start')) {
        clearTimeout(timer);
        reject(new Error(`the server's model workers failed to start: ${line.slice(0, 2000)}`));
      }
      if (record.msg === 'engine not available') {
        clearTimeout(timer);
        reject(new Error(`the server could not load ${record.engine}: ${record.reason}`));
      }
      if (record.msg === 'engines loaded' && grpcPort !== undefined && metricsPort !== undefined) {
        clearTimeout(timer);
        resolve({ grpcPort, metricsPort });
      }
    });
  }).catch(async (error: unknown) => {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });

  const client = createVoiceClient({ address: `127.0.0.1:${ports.grpcPort}` });
  const health = await client.health.check({ service: 'cortex.voice.v1.Transcription' });
  if (health.status !== ServingStatus.SERVING) {
    client.close();
    await stopChild(child);
    throw new Error(`Transcription is ${ServingStatus[health.status]} after loading`);
  }
  const metricsUrl = `http://127.0.0.1:${ports.metricsPort}/metrics`;
  return {
    pid,
    grpcPort: ports.grpcPort,
    metricsPort: ports.metricsPort,
    client,
    metricsUrl,
    ended,
    send: (message) => child.connected && child.send(message as object),
    onMessage: (listener) => child.on('message', listener),
    kill: (signal) => child.kill(signal),
    startSeconds: (performance.now() - started) / 1000,
    exited() {
      if (child.exitCode !== null) return `exit code ${child.exitCode}`;
      if (child.signalCode !== null) return `signal ${child.signalCode}`;
      return undefined;
    },
    scrape: () => scrapeMetrics(metricsUrl),
    async stop() {
      client.close();
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** SIGTERM (the server drains), then SIGKILL to this child alone if it is still there after 10 s. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export interface MetricsSnapshot {
  /** Sum of every sample named `name` whose labels include all of `labels`. */
  value(name: string, labels?: Record<string, string>): number;
  /** Whether the server exports a sample named `name`. */
  has(name: string): boolean;
}

export async function scrapeMetrics(url: string): Promise<MetricsSnapshot> {
  const response = await fetch(url);
  const text = await response.text();
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] ?? ''] = pair[2] ?? '';
    }
    samples.push({ name: match[1] ?? '', labels, value: Number(match[3]) });
  }
  return {
    has: (name) => samples.some((sample) => sample.name === name),
    value(name, wanted = {}) {
      return samples
        .filter(
          (sample) =>
            sample.name === name &&
            Object.entries(wanted).every(([key, value]) => sample.labels[key] === value),
        )
        .reduce((total, sample) => total + sample.value, 0);
    },
  };
}
