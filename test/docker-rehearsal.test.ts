import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { createVoiceClient, ServingStatus } from '../clients/node/index.js';
import { Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from '../server/gen/cortex/voice/v1/transcription_pb.js';
import {
  copyArguments,
  type DockerStage,
  execForm,
  healthcheck,
  parseDockerfile,
  runCommand,
} from './helpers/dockerfile.js';
import { repoRoot } from './helpers/paths.js';
import { CLOSED_LOOPBACK_HUB } from './helpers/test-server.js';

/**
 * A rehearsal of the image without Docker: the runtime stage of the Dockerfile is followed in a
 * temporary folder (its COPY sources, its `npm ...` RUN steps, its ENV, its CMD and HEALTHCHECK),
 * then the server is started there, asked for health, and stopped with SIGTERM. What the rehearsal
 * cannot do (create users, pull models) is listed, not silently dropped. The build stage's output
 * is this checkout's dist/, so run the full build first (`npm test` does).
 */

const root = repoRoot();
const dockerfile = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'));
const runtime = dockerfile.stages.at(-1)!;
const build = dockerfile.stages.find((stage) => stage.name === 'build')!;
const distBuilt =
  existsSync(join(root, 'dist/server/main.js')) && existsSync(join(root, 'dist/clients/cli/main.js'));

function workdir(stage: DockerStage): string {
  const dir = stage.instructions.filter((instruction) => instruction.keyword === 'WORKDIR').at(-1)?.args;
  assert.ok(dir, 'the stage sets a WORKDIR');
  return dir;
}

function stageEnv(stage: DockerStage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const instruction of stage.instructions.filter((candidate) => candidate.keyword === 'ENV')) {
    for (const match of instruction.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) {
      env[match[1]!] = match[2]!.replace(/^"|"$/g, '');
    }
  }
  return env;
}

function run(
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number },
) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(
      command,
      args,
      { ...options, timeout: options.timeoutMs, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('the Dockerfile runtime stage, rehearsed without Docker', {
  skip: !distBuilt && 'dist/ is not built',
}, () => {
  const app = mkdtempSync(join(tmpdir(), 'voice-image-'));
  const models = join(app, '.models');
  const skipped: string[] = [];
  let server: ChildProcess | undefined;
  let lines: Record<string, unknown>[] = [];
  let grpcPort = 0;
  let exitCode: Promise<number | null>;

  before(async () => {
    const appDir = workdir(runtime);
    const buildDir = workdir(build);
    for (const instruction of runtime.instructions) {
      if (instruction.keyword === 'COPY') {
        const { from, sources, destination } = copyArguments(instruction.args);
        // A destination is absolute or relative to WORKDIR; one ending in / receives the sources.
        const base = destination.startsWith('/')
          ? join(app, destination.slice(appDir.length))
          : join(app, destination);
        if (destination.startsWith('/'))
          assert.ok(destination.startsWith(appDir), `COPY into ${destination}`);
        for (const source of sources) {
          // --from=build paths are the build stage's output: this checkout after `npm run build`.
          const origin =
            from === build.name ? join(root, source.slice(buildDir.length + 1)) : join(root, source);
          if (from === build.name)
            assert.ok(source.startsWith(`${buildDir}/`), `COPY --from=build ${source}`);
          const target = destination.endsWith('/') ? join(base, basename(source)) : base;
          cpSync(origin, target, { recursive: true });
        }
      } else if (instruction.keyword === 'RUN') {
        const command = runCommand(instruction.args);
        if (!command.startsWith('npm ')) {
          skipped.push(command);
          continue;
        }
        const [npm, ...args] = command.split(/\s+/);
        // Same command; the local npm cache makes it quick. prefer-offline avoids revalidating.
        const result = await run(npm!, args, {
          cwd: app,
          env: { ...process.env, npm_config_prefer_offline: 'true' },
          timeoutMs: 240_000,
        });
        assert.equal(result.code, 0, `${command} failed:\n${result.stderr}`);
      }
    }
  });

  after(async () => {
    if (server && server.exitCode === null) server.kill('SIGKILL');
    rmSync(app, { recursive: true, force: true });
  });

  it('installs production dependencies only, from the lock file', () => {
    assert.ok(existsSync(join(app, 'node_modules/@grpc/grpc-js/package.json')), 'grpc-js installed');
    assert.ok(existsSync(join(app, 'node_modules/commander/package.json')), 'the CLI of the health check');
    for (const dev of ['typescript', '@biomejs/biome', '@bufbuild/buf', 'pino-pretty']) {
      assert.ok(!existsSync(join(app, 'node_modules', dev)), `${dev} is a dev dependency and stays out`);
    }
    assert.ok(existsSync(join(app, '.npmrc')), '.npmrc copied before npm ci');
    // The only RUN steps not rehearsed: creating the user, and the optional model download.
    assert.ok(
      skipped.every((command) => /useradd|PREPULL_MODELS/.test(command)),
      skipped.join('\n'),
    );
  });

  it('starts the CMD with the image environment and logs the bound ports', async () => {
    mkdirSync(models);
    const config = join(app, '.rehearsal.yaml');
    // The image's settings, with loopback and ephemeral ports so that nothing here collides.
    writeFileSync(
      config,
      stringify({
        service: { host: '127.0.0.1', port: 0, web_port: 0 },
        monitoring: { host: '127.0.0.1', prometheus_port: 0 },
        // Start-up downloads stay on, as in the image, against a closed loopback port: the
        // offline case, which must leave Synthesis serving.
        models: { hub_url: CLOSED_LOOPBACK_HUB },
      }),
    );
    const cmd = execForm(runtime.instructions.find((instruction) => instruction.keyword === 'CMD')!.args)!;
    assert.equal(cmd[0], 'node');
    const imageEnv = stageEnv(runtime);
    assert.equal(imageEnv.NODE_ENV, 'production');
    server = spawn(process.execPath, cmd.slice(1), {
      cwd: app,
      env: {
        PATH: process.env.PATH,
        ...imageEnv,
        VOICE_CONFIG: config,
        // /models is a volume in the image; here an empty folder: no Whisper model.
        VOICE_MODELS_DIR: models,
        MAX_WORKERS: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    server.stderr!.on('data', (chunk) => {
      stderr += chunk;
    });
    exitCode = new Promise((resolve) => server!.once('exit', (code) => resolve(code)));
    lines = [];
    const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
      createInterface({ input: server!.stdout! }).on('line', (line) => {
        const record = JSON.parse(line) as Record<string, unknown>;
        lines.push(record);
        if (record.msg === 'listening') resolve(record);
      });
      server!.once('exit', (code) =>
        reject(new Error(`the server exited (${code}) before listening:\n${stderr}`)),
      );
    });
    const record = await listening;
    grpcPort = Number(record.grpcPort);
    assert.ok(grpcPort > 0, 'grpcPort is logged');
    assert.ok(Number(record.metricsPort) > 0, 'metricsPort is logged');
  });

  it('answers the HEALTHCHECK command: Synthesis SERVING, Transcription and "" NOT_SERVING without Whisper', async () => {
    assert.ok(grpcPort > 0, 'the server started');
    const check = healthcheck(
      runtime.instructions.find((instruction) => instruction.keyword === 'HEALTHCHECK')!.args,
    );
    const [node, ...args] = check.command.map((arg) =>
      arg === '127.0.0.1:8899' ? `127.0.0.1:${grpcPort}` : arg,
    );
    assert.equal(node, 'node');
    assert.ok(args.includes(`127.0.0.1:${grpcPort}`), 'the health check names the gRPC address');
    const healthCli = (service?: string) =>
      run(process.execPath, service === undefined ? args : [...args, service], {
        cwd: app,
        env: { PATH: process.env.PATH },
        timeoutMs: 20_000,
      });

    // eSpeak NG is built in: Synthesis turns SERVING once the worker has loaded it.
    const deadline = Date.now() + 60_000;
    let synthesis = await healthCli(Synthesis.typeName);
    while (synthesis.code !== 0 && Date.now() < deadline) {
      await sleep(500);
      synthesis = await healthCli(Synthesis.typeName);
    }
    assert.equal(synthesis.code, 0, `Synthesis health: ${synthesis.stdout}${synthesis.stderr}`);
    assert.match(synthesis.stdout, /SERVING/);
    while (!lines.some((line) => line.msg === 'engines loaded') && Date.now() < deadline) await sleep(100);
    assert.ok(
      lines.some((line) => line.msg === 'engines loaded'),
      'engines finished loading',
    );

    // The container's own check (the whole server) fails: no Whisper model in the empty volume.
    const whole = await healthCli();
    assert.equal(whole.code, 1, `"" health: ${whole.stdout}${whole.stderr}`);
    assert.match(whole.stdout, /NOT_SERVING/);

    const client = createVoiceClient({ address: `127.0.0.1:${grpcPort}` });
    try {
      const transcription = await client.health.check(
        { service: Transcription.typeName },
        { timeoutMs: 5000 },
      );
      assert.equal(transcription.status, ServingStatus.NOT_SERVING);
      const server = await client.health.check({ service: '' }, { timeoutMs: 5000 });
      assert.equal(server.status, ServingStatus.NOT_SERVING);
    } finally {
      client.close();
    }
  });

  it('drains on the STOPSIGNAL and exits 0', async () => {
    const signal = runtime.instructions.find((instruction) => instruction.keyword === 'STOPSIGNAL')!.args;
    assert.equal(signal, 'SIGTERM');
    assert.ok(server && server.exitCode === null, 'the server is running');
    const started = Date.now();
    server.kill(signal);
    const code = await Promise.race([exitCode, sleep(40_000, 'timeout' as const, { ref: false })]);
    assert.equal(code, 0);
    assert.ok(Date.now() - started < 35_000, 'no calls in flight: the drain is quick');
    assert.ok(lines.some((line) => line.msg === 'draining' && line.signal === 'SIGTERM'));
    assert.ok(lines.some((line) => line.msg === 'stopped'));
  });
});
