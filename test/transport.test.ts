import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, ConnectError, createVoiceClient, type VoiceClient } from '../clients/node/index.js';
import { Reason, VoiceError } from '../server/errors.js';
import { Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { createLogger } from '../server/observability/logger.js';
import { createMetrics } from '../server/observability/metrics.js';
import { type CallContext, registration } from '../server/service/context.js';
import { createGrpcTransport, type GrpcTransport } from '../server/transport/grpc/server.js';
import { createHealthReporter } from '../server/transport/health-reporter.js';
import { captureLogs } from './helpers/log-capture.js';
import { testConfig } from './helpers/test-server.js';

/**
 * The gRPC transport with stand-in handlers on the Synthesis contract (no engines): what is tested
 * here is the adapter — cancellation, deadlines, backpressure, drain — not synthesis.
 */
interface Observed {
  produced: number;
  abortReason: unknown;
  aborted: Promise<void>;
}

function standInHandlers(observed: Observed) {
  const watch = (ctx: CallContext) => {
    let markAborted = () => {};
    observed.aborted = new Promise((resolve) => {
      markAborted = resolve;
    });
    ctx.signal.addEventListener('abort', () => {
      observed.abortReason = ctx.signal.reason;
      markAborted();
    });
  };
  const chunk = new Uint8Array(256 * 1024);
  return {
    async *synthesize(requests: AsyncIterable<{ request: { case: string | undefined } }>, ctx: CallContext) {
      watch(ctx);
      let sequenceNumber = 0;
      for await (const request of requests) {
        yield { sequenceNumber: sequenceNumber++, text: request.request.case ?? '' };
      }
    },
    async *synthesizeText(request: { text: string }, ctx: CallContext) {
      watch(ctx);
      const count = Number(request.text);
      for (let index = 0; index < count; index += 1) {
        observed.produced = index + 1;
        yield { sequenceNumber: index, audio: chunk };
      }
    },
    async listVoices(_request: unknown, ctx: CallContext) {
      watch(ctx);
      await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
      return {};
    },
  };
}

/** The transport alone, serving the Synthesis contract with the given stand-in handlers. */
function standInTransport(
  config: ReturnType<typeof testConfig>,
  handlers: unknown,
  parts: {
    metrics?: ReturnType<typeof createMetrics>;
    health?: ReturnType<typeof createHealthReporter>;
  } = {},
): GrpcTransport {
  return createGrpcTransport({
    config,
    logger: createLogger(config.logging, { destination: captureLogs().stream }),
    metrics: parts.metrics ?? createMetrics(),
    health: parts.health ?? createHealthReporter([Synthesis.typeName]),
    services: [registration(Synthesis, handlers as never)],
  });
}

describe('grpc transport', () => {
  let transport: GrpcTransport;
  let client: VoiceClient;
  const observed: Observed = { produced: 0, abortReason: undefined, aborted: Promise.resolve() };
  const reset = () => Object.assign(observed, { produced: 0, abortReason: undefined });

  before(async () => {
    const config = testConfig({ service: { timeout: 1 } });
    transport = createGrpcTransport({
      config,
      logger: createLogger(config.logging, { destination: captureLogs().stream }),
      metrics: createMetrics(),
      health: createHealthReporter([Synthesis.typeName]),
      services: [registration(Synthesis, standInHandlers(observed) as never)],
    });
    const port = await transport.listen();
    client = createVoiceClient({ address: `127.0.0.1:${port}` });
  });
  after(async () => {
    client.close();
    await transport.drain(0);
  });

  it('streams requests and responses in order and ends on half-close', async () => {
    reset();
    async function* requests() {
      yield { request: { case: 'text' as const, value: 'a' } };
      yield { request: { case: 'flush' as const, value: {} } };
      yield { request: { case: 'text' as const, value: 'b' } };
    }
    const seen: string[] = [];
    for await (const response of client.synthesis.synthesize(requests()))
      seen.push(`${response.sequenceNumber}:${response.text}`);
    assert.deepEqual(seen, ['0:text', '1:flush', '2:text']);
  });

  it('aborts the handler signal with CANCELLED when the client cancels', async () => {
    reset();
    const controller = new AbortController();
    async function* requests() {
      yield { request: { case: 'text' as const, value: 'a' } };
      await sleep(60_000, undefined, { signal: controller.signal }).catch(() => {});
    }
    const stream = client.synthesis.synthesize(requests(), { signal: controller.signal });
    const consumed = (async () => {
      for await (const _ of stream) controller.abort();
    })();
    await assert.rejects(consumed, (error: unknown) => ConnectError.from(error).code === Code.Canceled);
    await observed.aborted;
    assert.ok(observed.abortReason instanceof VoiceError);
    assert.equal(observed.abortReason.reason, Reason.Cancelled);
  });

  it("aborts with DEADLINE_EXCEEDED at the client's deadline", async () => {
    reset();
    const error = await client.synthesis
      .listVoices({}, { timeoutMs: 200 })
      .catch((caught: unknown) => ConnectError.from(caught));
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.DeadlineExceeded);
    await observed.aborted;
    assert.ok(observed.abortReason instanceof VoiceError);
    assert.equal(observed.abortReason.reason, Reason.DeadlineExceeded);
  });

  it('applies the configured timeout to unary calls without a deadline', async () => {
    reset();
    const startedAt = Date.now();
    const error = await client.synthesis.listVoices({}).catch((caught: unknown) => ConnectError.from(caught));
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.DeadlineExceeded);
    assert.match(error.rawMessage, /longer than service\.timeout \(1 s\)/);
    assert.ok(Date.now() - startedAt >= 900);
  });

  it('honours backpressure: a slow reader holds the producer back', async () => {
    reset();
    const stream = client.synthesis.synthesizeText({ text: '400' });
    let consumed = 0;
    let maxAhead = 0;
    for await (const _ of stream) {
      consumed += 1;
      if (consumed <= 20) await sleep(25);
      maxAhead = Math.max(maxAhead, observed.produced - consumed);
    }
    assert.equal(consumed, 400);
    // 400 messages of 256 KiB are 100 MiB; without backpressure the producer would finish at once.
    assert.ok(maxAhead < 100, `producer ran ${maxAhead} messages ahead of a slow reader`);
  });
});

describe('grpc transport drain', () => {
  it('refuses new calls with UNAVAILABLE, lets calls in flight finish, then cancels the rest', async () => {
    const config = testConfig();
    const observed: Observed = { produced: 0, abortReason: undefined, aborted: Promise.resolve() };
    const health = createHealthReporter([Synthesis.typeName]);
    const transport = standInTransport(config, standInHandlers(observed), { health });
    const port = await transport.listen();
    health.markStarted();
    health.setServiceReady(Synthesis.typeName, true);
    const client = createVoiceClient({ address: `127.0.0.1:${port}` });
    const input = new AbortController();
    try {
      async function* requests() {
        yield { request: { case: 'text' as const, value: 'a' } };
        await sleep(60_000, undefined, { signal: input.signal }).catch(() => {});
      }
      const responses: unknown[] = [];
      const inFlight = (async () => {
        for await (const response of client.synthesis.synthesize(requests())) responses.push(response);
      })();
      while (responses.length === 0) await sleep(10);

      const draining = transport.drain(500);
      await sleep(50);
      assert.equal(health.status(''), 'NOT_SERVING');
      assert.equal(health.status(Synthesis.typeName), 'NOT_SERVING');
      const refused = await client.synthesis
        .listVoices({})
        .catch((caught: unknown) => ConnectError.from(caught));
      assert.ok(refused instanceof ConnectError);
      assert.equal(refused.code, Code.Unavailable);
      assert.match(refused.rawMessage, /shutting down/);

      await assert.rejects(inFlight, (error: unknown) => ConnectError.from(error).code === Code.Unavailable);
      assert.equal(responses.length, 1, 'the response sent before the drain was delivered');
      assert.ok(observed.abortReason instanceof VoiceError);
      assert.equal(observed.abortReason.reason, Reason.Draining);
      await draining;
      assert.equal(transport.activeCalls, 0);
    } finally {
      input.abort();
      client.close();
    }
  });
});

describe('grpc transport call cap', () => {
  it('refuses calls beyond service.max_concurrent_requests with RESOURCE_EXHAUSTED, health excepted', async () => {
    const config = testConfig({ service: { max_concurrent_requests: 1 } });
    const observed: Observed = { produced: 0, abortReason: undefined, aborted: Promise.resolve() };
    const metrics = createMetrics();
    const transport = standInTransport(config, standInHandlers(observed), { metrics });
    const port = await transport.listen();
    const client = createVoiceClient({ address: `127.0.0.1:${port}` });
    const holder = new AbortController();
    try {
      const held = client.synthesis.listVoices({}, { signal: holder.signal }).catch(() => undefined);
      while (transport.activeCalls === 0) await sleep(5);
      const refused = await client.synthesis
        .listVoices({})
        .catch((caught: unknown) => ConnectError.from(caught));
      assert.ok(refused instanceof ConnectError);
      assert.equal(refused.code, Code.ResourceExhausted);
      assert.match(refused.rawMessage, /maximum of 1 calls \(service\.max_concurrent_requests\)/);
      assert.equal(refused.metadata.get('grpc-retry-pushback-ms'), '1000');
      await client.health.check({ service: '' });
      holder.abort();
      await held;
      while (transport.activeCalls > 0) await sleep(5);
      await sleep(20);
      const again = await client.synthesis
        .listVoices({}, { timeoutMs: 100 })
        .catch((caught: unknown) => ConnectError.from(caught));
      assert.ok(again instanceof ConnectError);
      assert.equal(again.code, Code.DeadlineExceeded, 'a freed slot admits the next call');
      const body = await metrics.registry.getSingleMetricAsString('voice_rejected_calls_total');
      assert.match(body, /reason="max_concurrent_requests"\} 1/);
      await sleep(100);
      const handled = await metrics.registry.getSingleMetricAsString('grpc_server_handled_total');
      assert.match(
        handled,
        /grpc_method="ListVoices",protocol="grpc",grpc_code="RESOURCE_EXHAUSTED"\} 1/,
        'refusals are recorded with their code',
      );
      assert.match(
        handled,
        /grpc_method="ListVoices",protocol="grpc",grpc_code="DEADLINE_EXCEEDED"\} 1/,
        'deadlines are not recorded as cancels',
      );
    } finally {
      client.close();
      await transport.drain(0);
    }
  });
});

describe('grpc transport message limit', () => {
  it('refuses a message above service.max_message_bytes with RESOURCE_EXHAUSTED', async () => {
    const config = testConfig({ service: { max_message_bytes: 65_536 } });
    const observed: Observed = { produced: 0, abortReason: undefined, aborted: Promise.resolve() };
    const transport = standInTransport(config, standInHandlers(observed));
    const port = await transport.listen();
    const client = createVoiceClient({ address: `127.0.0.1:${port}` });
    try {
      const error = await client.synthesis
        .listVoices({ language: 'x'.repeat(70_000) })
        .catch((caught: unknown) => ConnectError.from(caught));
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.ResourceExhausted);
      assert.equal(observed.abortReason, undefined, 'the handler never ran');
    } finally {
      client.close();
      await transport.drain(0);
    }
  });
});

describe('grpc transport long error messages', () => {
  it('bounds a status message that quotes a huge client value, and the connection keeps working', async () => {
    const config = testConfig();
    const transport = standInTransport(config, {
      ...standInHandlers({ produced: 0, abortReason: undefined, aborted: Promise.resolve() }),
      async listVoices(request: { language: string }) {
        throw new VoiceError(Reason.InvalidArgument, `language: "${request.language}" is not known`);
      },
    });
    const port = await transport.listen();
    const client = createVoiceClient({ address: `127.0.0.1:${port}` });
    try {
      const error = await client.synthesis
        .listVoices({ language: 'x'.repeat(200_000) }, { timeoutMs: 5000 })
        .catch((caught: unknown) => ConnectError.from(caught));
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.InvalidArgument, error.rawMessage);
      assert.ok(error.rawMessage.length <= 1024);
      assert.match(error.rawMessage, /^language: "x+…$/);
      const again = await client.synthesis
        .listVoices({ language: 'en' }, { timeoutMs: 5000 })
        .catch((caught: unknown) => ConnectError.from(caught));
      assert.ok(again instanceof ConnectError);
      assert.equal(again.code, Code.InvalidArgument, 'the same connection still answers');
    } finally {
      client.close();
      await transport.drain(0);
    }
  });

  it("lets a unary call run to the client's deadline even past service.timeout", async () => {
    const config = testConfig({ service: { timeout: 1 } });
    const transport = standInTransport(config, {
      ...standInHandlers({ produced: 0, abortReason: undefined, aborted: Promise.resolve() }),
      async listVoices() {
        await sleep(1500);
        return { voices: [] };
      },
    });
    const port = await transport.listen();
    const client = createVoiceClient({ address: `127.0.0.1:${port}` });
    try {
      const response = await client.synthesis.listVoices({}, { timeoutMs: 5000 });
      assert.deepEqual(response.voices, []);
    } finally {
      client.close();
      await transport.drain(0);
    }
  });

  it('tells calls to finish at the grace end, and cancels one that does not once the flush budget is over', async () => {
    const config = testConfig();
    const observed: Observed = { produced: 0, abortReason: undefined, aborted: Promise.resolve() };
    const marks: { finish?: number; cancel?: number } = {};
    const handlers = {
      ...standInHandlers(observed),
      // Ignores its finish signal: it keeps waiting for input until it is cancelled.
      async *synthesize(
        requests: AsyncIterable<{ request: { case: string | undefined } }>,
        ctx: CallContext,
      ) {
        ctx.finishSignal?.addEventListener('abort', () => {
          marks.finish = performance.now();
        });
        ctx.signal.addEventListener('abort', () => {
          marks.cancel = performance.now();
          observed.abortReason = ctx.signal.reason;
        });
        for await (const request of requests) yield { sequenceNumber: 0, text: request.request.case ?? '' };
      },
    };
    const transport = standInTransport(config, handlers);
    const client = createVoiceClient({ address: `127.0.0.1:${await transport.listen()}` });
    const input = new AbortController();
    try {
      async function* requests() {
        yield { request: { case: 'text' as const, value: 'a' } };
        await sleep(60_000, undefined, { signal: input.signal }).catch(() => {});
      }
      const iterator = client.synthesis.synthesize(requests())[Symbol.asyncIterator]();
      assert.ok(!(await iterator.next()).done);
      const startedAt = performance.now();
      const draining = transport.drain(200, 300);
      await assert.rejects(
        iterator.next(),
        (error: unknown) => ConnectError.from(error).code === Code.Unavailable,
      );
      assert.ok(marks.finish !== undefined && marks.cancel !== undefined);
      assert.ok(
        marks.finish - startedAt >= 190,
        `told to finish after the grace (${marks.finish - startedAt} ms)`,
      );
      assert.ok(
        marks.cancel - marks.finish >= 290,
        `cancelled after the flush (${marks.cancel - marks.finish} ms)`,
      );
      assert.equal((observed.abortReason as VoiceError).reason, Reason.Draining);
      await draining;
      assert.equal(transport.activeCalls, 0);
    } finally {
      input.abort();
      client.close();
    }
  });
});
