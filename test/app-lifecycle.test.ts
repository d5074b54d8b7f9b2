import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

interface ChildRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Milliseconds from the child's "stopped" line to its exit; undefined when it did not print it. */
  readonly exitAfterStopMs: number | undefined;
  readonly timedOut: boolean;
}

/**
 * Runs an ESM script file in a child node and waits for it to exit by itself: model worker threads
 * left running keep a process alive, so a child that does not exit has leaked workers. (A file, not
 * `-e`: workers inherit the child's execArgv, and `--input-type` makes them fail.)
 */
function runChild(file: string, timeoutMs: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let stoppedAt: number | undefined;
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      if (stoppedAt === undefined && stdout.includes('"stopped":true')) stoppedAt = performance.now();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const exitAfterStopMs = stoppedAt === undefined ? undefined : performance.now() - stoppedAt;
      resolve({ code, stdout, stderr, exitAfterStopMs, timedOut });
    });
  });
}

/**
 * Runs a scenario script in a child process, which must exit by itself (no worker thread left
 * behind) with code 0, and returns its run and the JSON line it printed with "stopped": true.
 */
/**
 * A child-process script that builds a server from `testConfig(<configExpression>)` with its logs
 * captured in `logs`, then runs `body` (JavaScript with `server`, `config` and `logs` in scope).
 */
function serverScript(configExpression: string, body: string): string {
  const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
  return `
      const { createVoiceServer } = await import(${url('../server/app.js')});
      const { createLogger } = await import(${url('../server/observability/logger.js')});
      const { testConfig } = await import(${url('./helpers/test-server.js')});
      const { captureLogs } = await import(${url('./helpers/log-capture.js')});
      const config = testConfig(${configExpression});
      const logs = captureLogs();
      const server = createVoiceServer(config, createLogger(config.logging, { destination: logs.stream }));
${body}`;
}

async function runScenario(file: string, script: string): Promise<{ run: ChildRun; result: unknown }> {
  await writeFile(file, script);
  const run = await runChild(file, 20_000);
  assert.equal(
    run.timedOut,
    false,
    `the child did not exit: worker threads leaked\n${run.stdout}${run.stderr}`,
  );
  assert.equal(run.code, 0, run.stderr);
  const line = run.stdout.split('\n').find((l) => l.includes('"stopped":true'));
  assert.ok(line, run.stdout);
  return { run, result: JSON.parse(line) };
}

describe('voice server lifecycle', () => {
  let dir: string;
  let models: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'app-lifecycle-'));
    // An empty models folder: the workers start fast and report the recognizer missing.
    models = join(dir, 'models');
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('stop() right after loadEngines() leaves no model worker running and fills no engine', async () => {
    const script = serverScript(
      `{
        models: { cache_dir: ${JSON.stringify(models)} },
        performance: { workers: 1 },
      }`,
      `
      const loading = server.loadEngines().then(
        () => 'loaded',
        (error) => 'rejected ' + (error.reason ?? error.message),
      );
      await server.stop(0);
      const outcome = await loading;
      console.log(JSON.stringify({
        stopped: true,
        outcome,
        pools: server.workerPools !== undefined,
        engines: [server.engines.vad, server.engines.recognizer, server.engines.synthesizer]
          .map((slot) => slot.current() !== undefined),
      }));
    `,
    );
    const { run, result } = await runScenario(join(dir, 'stop-while-loading.mjs'), script);
    assert.deepEqual(result, {
      stopped: true,
      outcome: 'rejected DRAINING',
      pools: false,
      engines: [false, false, false],
    });
    // stop() resolved only once the workers were gone: the process exits right away.
    assert.ok((run.exitAfterStopMs ?? Infinity) < 2000, `exited ${run.exitAfterStopMs} ms after stop`);
  });

  test('loadEngines() after stop() rejects with DRAINING and starts no worker', async () => {
    const script = serverScript(
      `{ models: { cache_dir: ${JSON.stringify(models)} } }`,
      `
      await server.stop(0);
      const outcome = await server.loadEngines().then(
        () => 'loaded',
        (error) => 'rejected ' + (error.reason ?? error.message),
      );
      console.log(JSON.stringify({ stopped: true, outcome, pools: server.workerPools !== undefined }));
    `,
    );
    const { result } = await runScenario(join(dir, 'load-after-stop.mjs'), script);
    assert.deepEqual(result, { stopped: true, outcome: 'rejected DRAINING', pools: false });
  });

  test('stop() while a pool waits to retry its load ends at once, leaving no worker or timer', async () => {
    const script = serverScript(
      `{
        models: { cache_dir: ${JSON.stringify(models)}, load_retry: { initial_delay_ms: 60000, max_delay_ms: 60000 } },
        performance: { workers: 1 },
      }`,
      `
      process.on('unhandledRejection', (error) => console.log(JSON.stringify({ unhandled: String(error) })));
      await server.loadEngines();
      const retry = await logs.waitFor((r) => r.msg === 'model pool did not load every engine; retrying');
      await server.stop(0);
      console.log(JSON.stringify({
        stopped: true,
        retry: { pool: retry.pool, attempt: retry.attempt, waits: retry.nextAttemptMs >= 45000 },
        engines: [server.engines.vad, server.engines.recognizer, server.engines.synthesizer]
          .map((slot) => slot.current() !== undefined),
      }));
    `,
    );
    const { run, result } = await runScenario(join(dir, 'stop-during-retry.mjs'), script);
    assert.deepEqual(result, {
      stopped: true,
      retry: { pool: 'inference', attempt: 1, waits: true },
      engines: [true, false, true],
    });
    assert.ok(!run.stdout.includes('unhandled'), run.stdout);
    assert.ok((run.exitAfterStopMs ?? Infinity) < 2000, `exited ${run.exitAfterStopMs} ms after stop`);
  });
});
