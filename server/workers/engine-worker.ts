/**
 * Entry of a model worker thread. Loads the engines its workerData names (once), reports `ready`,
 * then serves jobs one at a time; a `cancel` aborts the job's signal, which the engines check.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { Reason, VoiceError } from '../errors.js';
import { type JobHandler, type JobOutcome, loadEngines } from './engine-host.js';
import type { EngineWorkerData, FromWorker, TestJobs, ToWorker, WireError } from './messages.js';

const port = parentPort;
if (port === null) throw new Error('engine-worker.js must run in a worker thread');

const data = workerData as EngineWorkerData;
if (
  data.testHooks === true &&
  data.crashOnceWhileLoading !== undefined &&
  !existsSync(data.crashOnceWhileLoading)
) {
  writeFileSync(data.crashOnceWhileLoading, 'crashed once while loading\n');
  process.exit(4);
}
if (data.testHooks === true && data.failLoads !== undefined) {
  const { counter, times } = data.failLoads;
  const failed = existsSync(counter) ? Number(readFileSync(counter, 'utf8')) : 0;
  if (failed < times) {
    writeFileSync(counter, String(failed + 1));
    throw new Error(`test hook: load ${failed + 1} of ${times} fails`);
  }
}
// A pool closing while this worker loads asks it to exit: it does so once loading is over, since
// terminating a thread inside onnxruntime's session creation can abort the whole process.
let shutdownWhileLoading = false;
const whileLoading = (message: ToWorker) => {
  if (message.type === 'shutdown') shutdownWhileLoading = true;
};
port.on('message', whileLoading);
const loadStarted = performance.now();
const host = await loadEngines(data);
port.off('message', whileLoading);
if (shutdownWhileLoading) process.exit(0);
const handlers = new Map(host.handlers);
let crashOnRecognize = false;
if (data.testHooks === true) {
  for (const [kind, handler] of testHandlers()) handlers.set(kind, handler);
  const recognize = handlers.get('recognize');
  if (recognize) {
    handlers.set('recognize', (payload, signal) => {
      if (crashOnRecognize) process.exit(3);
      return recognize(payload, signal);
    });
  }
}

const running = new Map<number, AbortController>();
/** The buffers the last result moved out, for the `lastTransfer` test hook. */
let lastTransfer: readonly ArrayBuffer[] = [];

let shuttingDown = false;
const exitIfIdle = () => {
  if (shuttingDown && running.size === 0) process.exit(0);
};

port.on('message', (message: ToWorker) => {
  if (message.type === 'cancel') {
    running.get(message.id)?.abort(new VoiceError(Reason.Cancelled, 'the call was cancelled'));
    return;
  }
  if (message.type === 'shutdown') {
    shuttingDown = true;
    for (const controller of running.values())
      controller.abort(new VoiceError(Reason.EngineUnavailable, 'the model worker is shutting down'));
    exitIfIdle();
    return;
  }
  void runJob(message.id, message.kind, message.payload);
});
post({ type: 'ready', report: host.report, loadSeconds: (performance.now() - loadStarted) / 1000 });

function post(message: FromWorker, transfer: readonly ArrayBuffer[] = []): void {
  port?.postMessage(message, transfer);
}

async function runJob(id: number, kind: string, payload: unknown): Promise<void> {
  const controller = new AbortController();
  running.set(id, controller);
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  try {
    const handler = handlers.get(kind);
    if (handler === undefined) {
      throw new VoiceError(Reason.EngineUnavailable, `this model worker has no engine for "${kind}" jobs`);
    }
    const outcome: JobOutcome = await handler(payload, controller.signal);
    const transfer = outcome.transfer ?? [];
    post(
      {
        type: 'result',
        id,
        result: outcome.result,
        seconds: seconds(),
        ...(outcome.model === undefined ? {} : { model: outcome.model }),
      },
      transfer,
    );
    lastTransfer = transfer;
  } catch (error) {
    post({ type: 'error', id, error: toWire(error), seconds: seconds() });
  } finally {
    running.delete(id);
    exitIfIdle();
  }
}

/** VoiceErrors keep reason, message, retry hint and info; anything else goes out generic, its stack as detail. */
function toWire(error: unknown): WireError {
  if (error instanceof VoiceError) {
    const cause: unknown = error.cause;
    const detail =
      error.reason === Reason.Internal ? stackOf(cause === undefined ? error : cause) : undefined;
    return {
      reason: error.reason,
      message: error.rawMessage,
      ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
      ...(Object.keys(error.info).length === 0 ? {} : { info: { ...error.info } }),
      ...(detail === undefined ? {} : { detail }),
    };
  }
  return { reason: Reason.Internal, message: 'internal error', detail: stackOf(error) };
}

function stackOf(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

/** Job kinds that exist only with `testHooks: true`, to prove the pool's behaviour in tests. */
function testHandlers(): Map<string, JobHandler> {
  const hooks: {
    [K in keyof TestJobs]: (payload: TestJobs[K]['payload'], signal: AbortSignal) => Promise<JobOutcome>;
  } = {
    async echo(payload) {
      return { result: payload, transfer: payload.buffer === undefined ? [] : [payload.buffer] };
    },
    async sleep({ ms, ignoreAbort = false }, signal) {
      await sleep(ms, undefined, ignoreAbort ? {} : { signal });
      return { result: ms, model: 'test-sleep' };
    },
    async crash({ mode }) {
      if (mode === 'exit') process.exit(3);
      if (mode === 'throw') {
        setImmediate(() => {
          throw new Error('test hook: uncaught exception in the worker');
        });
        return new Promise<never>(() => {});
      }
      const hog: number[][] = [];
      for (;;) hog.push(Array.from({ length: 1 << 16 }, (_, i) => i + hog.length));
    },
    async fail({ reason, message, retryAfterMs, info }) {
      if (reason === undefined) throw new Error(message);
      throw new VoiceError(reason, message, {
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        ...(info === undefined ? {} : { info }),
      });
    },
    async crashOnNextRecognize() {
      crashOnRecognize = true;
      return { result: null };
    },
    async lastTransfer() {
      return { result: lastTransfer.map((buffer) => buffer.byteLength) };
    },
    async memory({ gc }) {
      if (gc === true) (globalThis as { gc?: () => void }).gc?.();
      const { heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
      return { result: { threadId, heapUsed, heapTotal, external, arrayBuffers } };
    },
  };
  return new Map(Object.entries(hooks) as [string, JobHandler][]);
}
