import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Code } from '@connectrpc/connect';
import { pino } from 'pino';
import { Reason, VoiceError } from '../server/errors.js';
import { createMetrics, type Metrics } from '../server/observability/metrics.js';
import { backoffDelay } from '../server/workers/backoff.js';
import type { EngineReport, EngineWorkerData, TestJobs } from '../server/workers/messages.js';
import {
  createWorkerPool,
  type LoadStatus,
  type WorkerPool,
  type WorkerPoolOptions,
} from '../server/workers/pool.js';
import { captureLogs } from './helpers/log-capture.js';

const never = new AbortController().signal;
const SCHEDULE = { initialMs: 40, maxMs: 200 };

function hookPool(overrides: Partial<WorkerPoolOptions>): WorkerPool<TestJobs, EngineReport> {
  return createWorkerPool<TestJobs, EngineReport>({
    name: 'test',
    size: 1,
    workerData: { testHooks: true } satisfies EngineWorkerData,
    queueSize: 10,
    restartDelayMs: 20,
    loadRetry: SCHEDULE,
    ...overrides,
  });
}

/** Resolves with the first status the pool reports that `which` accepts. */
function statusWhere(
  pool: WorkerPool<TestJobs, EngineReport>,
  which: (status: LoadStatus) => boolean,
): Promise<LoadStatus> {
  return new Promise((resolve) => {
    if (which(pool.status())) {
      resolve(pool.status());
      return;
    }
    const stop = pool.onStatus((status) => {
      if (!which(status)) return;
      stop();
      resolve(status);
    });
  });
}

async function value(metric: Metrics['loadFailures'] | Metrics['readyWorkers'], pool: string) {
  return (await metric.get()).values.find((v) => v.labels.pool === pool)?.value ?? 0;
}

describe('backoff schedule', () => {
  test('doubles from the initial delay up to the maximum, jittered by at most a quarter', () => {
    const schedule = { initialMs: 1000, maxMs: 60_000 };
    const middle = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, schedule, () => 0.5));
    assert.deepEqual(middle, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
    assert.equal(
      backoffDelay(1, schedule, () => 0),
      750,
    );
    assert.equal(
      backoffDelay(1, schedule, () => 0.999_999),
      1250,
    );
    assert.equal(
      backoffDelay(10, schedule, () => 0.999_999),
      60_000,
      'never past the maximum',
    );
    assert.equal(
      backoffDelay(10_000, schedule, () => 0.5),
      60_000,
    );
  });
});

describe('a worker pool that fails to load recovers by itself', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pool-recovery-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('fails four loads with growing delays, start() gives up after three, then it serves', async () => {
    const logs = captureLogs();
    const metrics = createMetrics();
    const pool = hookPool({
      workerData: {
        testHooks: true,
        failLoads: { counter: join(dir, 'four'), times: 4 },
      } satisfies EngineWorkerData,
      logger: pino(logs.stream),
      metrics,
    });
    try {
      const ready = pool.whenReady();
      await assert.rejects(pool.start(), (error: unknown) => {
        assert.ok(error instanceof VoiceError);
        assert.equal(error.reason, Reason.EngineUnavailable);
        assert.match(error.rawMessage, /load 3 of 4 fails/);
        return true;
      });
      const report = await ready;
      assert.deepEqual(report, {});
      assert.deepEqual(
        (await pool.run('echo', { tag: 'after' }, { priority: 0, signal: never })).tag,
        'after',
      );
      const failures = logs.records().filter((r) => r.msg === 'model worker failed to load; retrying');
      assert.deepEqual(
        failures.map((r) => [r.pool, r.attempt]),
        [
          ['test', 1],
          ['test', 2],
          ['test', 3],
          ['test', 4],
        ],
      );
      for (const [i, record] of failures.entries()) {
        assert.match(String(record.reason), new RegExp(`load ${i + 1} of 4 fails`));
        const base = Math.min(SCHEDULE.maxMs, SCHEDULE.initialMs * 2 ** i);
        const delay = Number(record.nextAttemptMs);
        assert.ok(delay >= base * 0.75 && delay <= Math.min(SCHEDULE.maxMs, base * 1.25), `${i}: ${delay}`);
      }
      assert.equal(pool.stats().restarts, 4);
      assert.deepEqual(pool.status(), {
        ready: 1,
        loadFailures: 0,
        reason: undefined,
        nextAttemptAt: undefined,
      });
      assert.equal(await value(metrics.loadFailures, 'test'), 4);
      assert.equal(await value(metrics.readyWorkers, 'test'), 1);
      const next = (await metrics.nextLoadAttempt.get()).values.find((v) => v.labels.pool === 'test');
      assert.equal(next?.value, 0, 'no attempt scheduled once it serves');
    } finally {
      await pool.close();
    }
  });

  test('a replacement that keeps dying while loading backs off, refuses jobs meanwhile, and serves once it loads', async () => {
    const counter = join(dir, 'replacement');
    // The first worker counts as the fifth load: it loads. Its replacements fail two loads.
    await writeFile(counter, '4');
    const metrics = createMetrics();
    const logs = captureLogs();
    const pool = hookPool({
      workerData: { testHooks: true, failLoads: { counter, times: 4 } } satisfies EngineWorkerData,
      metrics,
      logger: pino(logs.stream),
      loadRetry: { initialMs: 150, maxMs: 1000 },
    });
    try {
      await pool.start();
      await writeFile(counter, '2');
      const down = statusWhere(pool, (s) => s.loadFailures === 1 && s.nextAttemptAt !== undefined);
      await assert.rejects(
        pool.run('crash', { mode: 'exit' }, { priority: 0, signal: never }),
        (error: unknown) => error instanceof VoiceError && error.reason === Reason.WorkerCrashed,
      );
      const status = await down;
      assert.equal(status.ready, 0);
      assert.equal(await value(metrics.readyWorkers, 'test'), 0);
      await assert.rejects(pool.run('echo', {}, { priority: 0, signal: never }), (error: unknown) => {
        assert.ok(error instanceof VoiceError);
        assert.equal(error.reason, Reason.EngineUnavailable);
        assert.equal(error.code, Code.Unavailable);
        assert.ok((error.retryAfterMs ?? 0) > 0 && (error.retryAfterMs ?? 0) <= 1000);
        return true;
      });
      await pool.whenReady();
      assert.equal((await pool.run('echo', { tag: 'back' }, { priority: 0, signal: never })).tag, 'back');
      assert.equal(pool.stats().restarts, 3, 'the crashed worker and two failed loads were replaced');
      assert.equal(await value(metrics.loadFailures, 'test'), 2);
      assert.equal(await value(metrics.readyWorkers, 'test'), 1);
      const delays = logs
        .records()
        .filter((r) => r.msg === 'model worker failed to load; retrying')
        .map((r) => Number(r.nextAttemptMs));
      assert.equal(delays.length, 2);
      assert.ok(delays[1] !== undefined && delays[0] !== undefined && delays[1] > delays[0], String(delays));
    } finally {
      await pool.close();
    }
  });

  test('close() during a reload whose workers fail to load rejects the reload with DRAINING', async () => {
    const pool = hookPool({ loadRetry: { initialMs: 60_000, maxMs: 60_000 } });
    await pool.start();
    const failing = statusWhere(pool, (s) => s.loadFailures === 1);
    const reload = pool.reload({
      testHooks: true,
      failLoads: { counter: join(dir, 'reload'), times: 1000 },
    } satisfies EngineWorkerData);
    const outcome = reload.then(
      () => 'reloaded',
      (error: unknown) => (error instanceof VoiceError ? error.reason : String(error)),
    );
    await failing;
    assert.equal(pool.stats().ready, 1, 'the old worker serves meanwhile');
    assert.equal((await pool.run('echo', { tag: 'old' }, { priority: 0, signal: never })).tag, 'old');
    await pool.close();
    assert.equal(await outcome, Reason.Draining);
    assert.equal(pool.stats().workers, 0);
  });

  test('close() during the backoff ends at once: whenReady rejects, no worker or timer is left', async () => {
    const file = join(dir, 'close-during-backoff.mjs');
    const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
    await writeFile(
      file,
      `
      const { createWorkerPool } = await import(${url('../server/workers/pool.js')});
      const pool = createWorkerPool({
        name: 'test', size: 1, queueSize: 1,
        workerData: { testHooks: true, failLoads: { counter: ${JSON.stringify(join(dir, 'never'))}, times: 1000 } },
        loadRetry: { initialMs: 60000, maxMs: 60000 },
      });
      const started = pool.start().then(() => 'started', (e) => 'rejected ' + e.reason);
      const ready = pool.whenReady().then(() => 'ready', (e) => 'rejected ' + e.reason);
      await new Promise((resolve) => {
        const stop = pool.onStatus((s) => { if (s.nextAttemptAt !== undefined) { stop(); resolve(); } });
      });
      const waiting = pool.status().nextAttemptAt - Date.now();
      await pool.close();
      console.log(JSON.stringify({ stopped: true, waiting: waiting > 30000, started: await started,
        ready: await ready, workers: pool.stats().workers, status: pool.status() }));
      `,
    );
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stoppedAt: number | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      stoppedAt ??= stdout.includes('"stopped":true') ? performance.now() : undefined;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(timer);
    const exitAfterStop = stoppedAt === undefined ? Infinity : performance.now() - stoppedAt;
    assert.equal(code, 0, `${stdout}${stderr}`);
    assert.equal(stderr.includes('Unhandled'), false, stderr);
    assert.deepEqual(JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}'), {
      stopped: true,
      waiting: true,
      started: 'rejected DRAINING',
      ready: 'rejected DRAINING',
      workers: 0,
      status: { ready: 0, loadFailures: 1, reason: 'test hook: load 1 of 1000 fails (exit code 1)' },
    });
    assert.ok(exitAfterStop < 2000, `the process exited ${exitAfterStop} ms after close()`);
  });
});
