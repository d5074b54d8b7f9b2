import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create, createFileRegistry, fromBinary, toBinary } from '@bufbuild/protobuf';
import { anyUnpack, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { type Client, createClient, type Transport } from '@connectrpc/connect';
import * as connectNode from '@connectrpc/connect-node';
import * as connectWeb from '@connectrpc/connect-web';
import { credentials, Client as GrpcClient, type ServiceError } from '@grpc/grpc-js';
import { describeFailure } from '../clients/cli/errors.js';
import {
  Code,
  type ConnectError,
  createVoiceClient,
  errorInfoOf,
  errorReasonOf,
  Reason,
  retryDelayOf,
  VOICE_ERROR_DOMAIN,
  type VoiceClient,
} from '../clients/node/index.js';
import { createEdge } from '../server/edge/edge.js';
import { invalidArgument, VoiceError } from '../server/errors.js';
import { ListVoicesRequestSchema, Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { ErrorInfoSchema, RetryInfoSchema } from '../server/gen/google/rpc/error_details_pb.js';
import { StatusSchema } from '../server/gen/google/rpc/status_pb.js';
import { Health } from '../server/gen/health/v1/health_pb.js';
import { createLogger } from '../server/observability/logger.js';
import { createMetrics } from '../server/observability/metrics.js';
import { type CallContext, registration } from '../server/service/context.js';
import { createGrpcTransport } from '../server/transport/grpc/server.js';
import { createHealthReporter } from '../server/transport/health-reporter.js';
import { createWebTransport } from '../server/transport/web/server.js';
import { expectError } from './helpers/errors.js';
import { captureLogs, type LogCapture } from './helpers/log-capture.js';
import { createReflectionClient } from './helpers/reflection-client.js';
import { startTestServer, type TestServer, testConfig } from './helpers/test-server.js';

/**
 * Standard error details (AIP-193) over real loopback ports: every failed status carries a
 * google.rpc.ErrorInfo (catalogue reason, the service's domain, the error's info) and, where a
 * retry makes sense, a google.rpc.RetryInfo, whatever the protocol and whoever reads it: a bare
 * grpc-js client, connect-node and connect-web over gRPC-Web and Connect, the SDK, grpcurl through
 * reflection.
 */
const OVERLOADED = {
  reason: Reason.Overloaded,
  domain: VOICE_ERROR_DOMAIN,
  metadata: { limit: 'performance.request_queue_size' },
};

/** `language` picks the failure of ListVoices; SynthesizeText fails after its first chunk. */
const standIns = {
  async listVoices(request: { language: string }) {
    if (request.language === 'overloaded') {
      throw new VoiceError(Reason.Overloaded, 'the queue is full; retry later', {
        retryAfterMs: 1500,
        info: { limit: 'performance.request_queue_size' },
      });
    }
    if (request.language === 'field') throw invalidArgument('language', 'is not a BCP 47 tag');
    if (request.language === 'bug') throw new Error('secret cause at /srv/models/voice.onnx');
    return { voices: [] };
  },
  async *synthesizeText(_request: unknown, _ctx: CallContext) {
    yield { sequenceNumber: 0 };
    throw new VoiceError(Reason.LimitExceeded, 'text: too long', {
      info: { limit: 'service.max_text_chars' },
    });
  },
  async *synthesize() {},
};

interface Ports {
  readonly grpc: number;
  readonly web: number;
  readonly logs: LogCapture;
  stop(): Promise<void>;
}

async function startPorts(sections: Record<string, unknown> = {}): Promise<Ports> {
  const service = (sections.service ?? {}) as Record<string, unknown>;
  const config = testConfig({ ...sections, service: { web_port: 0, ...service } });
  const logs = captureLogs();
  const logger = createLogger(config.logging, { destination: logs.stream });
  const metrics = createMetrics();
  const health = createHealthReporter([Synthesis.typeName]);
  const edge = createEdge({ config, logger, metrics });
  const services = [registration(Synthesis, standIns as never)];
  const grpc = createGrpcTransport({ config, logger, metrics, health, services, edge });
  const web = createWebTransport({ config, edge, health, services });
  const ports = { grpc: await grpc.listen(), web: await web.listen() };
  health.markStarted();
  health.setServiceReady(Synthesis.typeName, true);
  return { ...ports, logs, stop: () => Promise.all([grpc.drain(0), web.drain(0)]).then(() => {}) };
}

type Kind = 'sdk' | 'node grpc-web' | 'node connect' | 'web grpc-web' | 'web connect';
const KINDS: readonly Kind[] = ['sdk', 'node grpc-web', 'node connect', 'web grpc-web', 'web connect'];

/** The Synthesis and Health clients of one kind; the SDK on the gRPC port, the others on the web port. */
function clientsOf(kind: Kind, ports: Ports, opened: VoiceClient[]) {
  if (kind === 'sdk') {
    const client = createVoiceClient({ address: `127.0.0.1:${ports.grpc}` });
    opened.push(client);
    return client;
  }
  const baseUrl = `http://127.0.0.1:${ports.web}`;
  const transports: Record<Exclude<Kind, 'sdk'>, () => Transport> = {
    'node grpc-web': () => connectNode.createGrpcWebTransport({ baseUrl, httpVersion: '1.1' }),
    'node connect': () => connectNode.createConnectTransport({ baseUrl, httpVersion: '1.1' }),
    'web grpc-web': () => connectWeb.createGrpcWebTransport({ baseUrl }),
    'web connect': () => connectWeb.createConnectTransport({ baseUrl }),
  };
  const transport = transports[kind]();
  return {
    synthesis: createClient(Synthesis, transport) as Client<typeof Synthesis>,
    health: createClient(Health, transport) as Client<typeof Health>,
  };
}

function detailsOf(error: ConnectError) {
  const infos = error.findDetails(ErrorInfoSchema);
  assert.equal(infos.length, 1, 'one ErrorInfo');
  const [info] = infos;
  return {
    code: error.code,
    info: { reason: info?.reason, domain: info?.domain, metadata: info?.metadata },
    retry: error.findDetails(RetryInfoSchema).map((retry) => retry.retryDelay),
  };
}

/** A unary call with a bare grpc-js client, raw bytes in and out, as any gRPC stack would make it. */
function grpcJsListVoices(port: number, language: string): Promise<ServiceError> {
  const client = new GrpcClient(`127.0.0.1:${port}`, credentials.createInsecure());
  const request = toBinary(ListVoicesRequestSchema, create(ListVoicesRequestSchema, { language }));
  return new Promise<ServiceError>((resolve, reject) => {
    client.makeUnaryRequest(
      '/cortex.voice.v1.Synthesis/ListVoices',
      (bytes: Uint8Array) => Buffer.from(bytes),
      (bytes: Buffer) => bytes,
      request,
      (error) => {
        client.close();
        if (error) resolve(error);
        else reject(new Error('the call succeeded'));
      },
    );
  });
}

describe('standard error details on every port and protocol', () => {
  let ports: Ports;
  const opened: VoiceClient[] = [];
  before(async () => {
    ports = await startPorts();
  });
  after(async () => {
    for (const client of opened) client.close();
    await ports.stop();
  });

  it('gives a bare grpc-js client a google.rpc.Status with ErrorInfo and RetryInfo in grpc-status-details-bin', async () => {
    const error = await grpcJsListVoices(ports.grpc, 'overloaded');
    assert.equal(error.code, Code.ResourceExhausted);
    const bytes = error.metadata.get('grpc-status-details-bin')[0];
    assert.ok(Buffer.isBuffer(bytes), 'grpc-status-details-bin is sent');
    const status = fromBinary(StatusSchema, bytes);
    assert.equal(status.code, Code.ResourceExhausted);
    assert.equal(status.message, 'the queue is full; retry later');
    const [first, second] = status.details;
    assert.ok(first && second);
    const info = anyUnpack(first, ErrorInfoSchema);
    assert.deepEqual({ reason: info?.reason, domain: info?.domain, metadata: info?.metadata }, OVERLOADED);
    const retry = anyUnpack(second, RetryInfoSchema);
    assert.equal(retry?.retryDelay?.seconds, 1n);
    assert.equal(retry?.retryDelay?.nanos, 500_000_000);
    assert.deepEqual(error.metadata.get('grpc-retry-pushback-ms'), ['1500']);
    assert.deepEqual(error.metadata.get('cortex-error-reason'), [], 'no custom reason trailer');
  });

  it('gives every client the same ErrorInfo and RetryInfo through findDetails, and the SDK reads them', async () => {
    for (const kind of KINDS) {
      const error = await expectError(
        clientsOf(kind, ports, opened).synthesis.listVoices({ language: 'overloaded' }),
      );
      assert.deepEqual(
        detailsOf(error),
        {
          code: Code.ResourceExhausted,
          info: OVERLOADED,
          retry: [{ $typeName: 'google.protobuf.Duration', seconds: 1n, nanos: 500_000_000 }],
        },
        kind,
      );
      assert.deepEqual(errorInfoOf(error), OVERLOADED, kind);
      assert.equal(errorReasonOf(error), Reason.Overloaded, kind);
      assert.equal(retryDelayOf(error), 1500, kind);
      assert.equal(error.metadata.get('cortex-error-reason'), null, `${kind}: no custom reason metadata`);
      assert.equal(
        describeFailure(error, 'here'),
        'RESOURCE_EXHAUSTED: the queue is full; retry later [OVERLOADED]',
        kind,
      );
    }
  });

  it('names the field of an invalid argument, and carries ErrorInfo on a stream that fails after a message', async () => {
    for (const kind of KINDS) {
      const clients = clientsOf(kind, ports, opened);
      const invalid = await expectError(clients.synthesis.listVoices({ language: 'field' }));
      assert.deepEqual(errorInfoOf(invalid)?.metadata, { field: 'language' }, kind);
      assert.equal(errorReasonOf(invalid), Reason.InvalidArgument, kind);
      assert.equal(retryDelayOf(invalid), undefined, kind);
      let chunks = 0;
      const failed = await expectError(async () => {
        for await (const _ of clients.synthesis.synthesizeText({ text: 'hello' })) chunks += 1;
      });
      assert.equal(chunks, 1, `${kind}: the chunk before the failure arrives`);
      assert.deepEqual(
        detailsOf(failed),
        {
          code: Code.ResourceExhausted,
          info: {
            reason: Reason.LimitExceeded,
            domain: VOICE_ERROR_DOMAIN,
            metadata: { limit: 'service.max_text_chars' },
          },
          retry: [],
        },
        kind,
      );
    }
  });

  it('sends an unexpected error as INTERNAL with ErrorInfo INTERNAL and nothing of its cause', async () => {
    const raw = await grpcJsListVoices(ports.grpc, 'bug');
    const bytes = raw.metadata.get('grpc-status-details-bin')[0];
    assert.ok(Buffer.isBuffer(bytes));
    assert.doesNotMatch(bytes.toString('latin1'), /secret|onnx/);
    for (const kind of KINDS) {
      const error = await expectError(
        clientsOf(kind, ports, opened).synthesis.listVoices({ language: 'bug' }),
      );
      assert.equal(error.code, Code.Internal, kind);
      assert.equal(error.rawMessage, 'internal error', kind);
      assert.deepEqual(
        detailsOf(error).info,
        { reason: Reason.Internal, domain: VOICE_ERROR_DOMAIN, metadata: {} },
        kind,
      );
    }
  });

  it("gives a status from a handler that is not ours (grpc-health-check's NOT_FOUND) ErrorInfo, and logs its reason", async () => {
    for (const kind of KINDS) {
      const error = await expectError(
        clientsOf(kind, ports, opened).health.check({ service: 'no.such.Service' }),
      );
      assert.equal(error.code, Code.NotFound, kind);
      assert.deepEqual(
        detailsOf(error).info,
        { reason: Reason.NotFound, domain: VOICE_ERROR_DOMAIN, metadata: {} },
        kind,
      );
    }
    const logged = ports.logs
      .records()
      .find((record) => record.method === 'grpc.health.v1.Health/Check' && record.protocol === 'grpc');
    assert.equal(logged?.code, 'NOT_FOUND');
    assert.equal(logged?.reason, Reason.NotFound, 'the call log reads the reason from the ErrorInfo');
  });
});

describe('standard error details of protocol errors on the web port', () => {
  let ports: Ports;
  before(async () => {
    ports = await startPorts({ service: { max_message_bytes: 64 * 1024 } });
  });
  after(() => ports.stop());
  const url = () => `http://127.0.0.1:${ports.web}/cortex.voice.v1.Synthesis/ListVoices`;

  it('adds ErrorInfo to the error connect-node raises for an undecodable Connect request', async () => {
    const response = await fetch(url(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"language": 5}',
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as {
      code: string;
      details?: Array<{ type: string; debug?: { reason?: string; domain?: string } }>;
    };
    assert.equal(body.code, 'invalid_argument');
    const info = body.details?.find((detail) => detail.type === 'google.rpc.ErrorInfo');
    assert.deepEqual(info?.debug, { reason: Reason.InvalidArgument, domain: VOICE_ERROR_DOMAIN });
  });

  it('adds ErrorInfo to the grpc-status-details-bin of a gRPC-Web request past max_message_bytes', async () => {
    const length = 64 * 1024 + 1;
    const frame = Buffer.alloc(5 + length);
    frame.writeUInt32BE(length, 1);
    const response = await fetch(url(), {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto' },
      body: frame,
    });
    const body = Buffer.from(await response.arrayBuffer());
    assert.equal(body[0], 0x80, 'the body is one trailers frame');
    const trailers = new Map(
      body
        .subarray(5)
        .toString('latin1')
        .split('\r\n')
        .filter((line) => line !== '')
        .map((line) => {
          const colon = line.indexOf(':');
          return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()] as const;
        }),
    );
    assert.equal(trailers.get('grpc-status'), String(Code.ResourceExhausted));
    const status = fromBinary(
      StatusSchema,
      Buffer.from(trailers.get('grpc-status-details-bin') ?? '', 'base64'),
    );
    const info = status.details[0] && anyUnpack(status.details[0], ErrorInfoSchema);
    assert.deepEqual([info?.reason, info?.domain], [Reason.LimitExceeded, VOICE_ERROR_DOMAIN]);
  });
});

describe('standard error details of edge refusals', () => {
  it('refuses a call without its key with ErrorInfo UNAUTHENTICATED on every protocol', async () => {
    const ports = await startPorts({ security: { api_key_required: true, api_keys: ['key-a'] } });
    const opened: VoiceClient[] = [];
    try {
      for (const kind of KINDS) {
        const error = await expectError(clientsOf(kind, ports, opened).synthesis.listVoices({}));
        assert.equal(error.code, Code.Unauthenticated, kind);
        const { info } = detailsOf(error);
        assert.deepEqual([info.reason, info.domain], [Reason.Unauthenticated, VOICE_ERROR_DOMAIN], kind);
      }
    } finally {
      for (const client of opened) client.close();
      await ports.stop();
    }
  });
});

describe('reflection of the error details', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  it('serves google.rpc.ErrorInfo with its imports, enough to decode a failed call as grpcurl does', async () => {
    const reflection = createReflectionClient(t.address);
    try {
      const files = await reflection.fileContainingSymbol('google.rpc.ErrorInfo');
      const names = files.map((file) => file.name);
      assert.equal(names[0], 'google/rpc/error_details.proto');
      assert.ok(names.includes('google/protobuf/duration.proto'), `imports in ${names.join(', ')}`);
      const status = await reflection.fileContainingSymbol('google.rpc.Status');
      assert.deepEqual(status.map((file) => file.name).sort(), [
        'google/protobuf/any.proto',
        'google/rpc/status.proto',
      ]);
      // grpcurl resolves each detail's type URL through reflection and decodes it with what it got.
      const byName = new Map([...files, ...status].map((file) => [file.name, file]));
      const registry = createFileRegistry(
        createFileRegistry(files[0] as FileDescriptorProto, (name) => byName.get(name)),
        createFileRegistry(status[0] as FileDescriptorProto, (name) => byName.get(name)),
      );
      const failed = await expectError(t.client.synthesis.listVoices({}));
      const detail = failed.details[0] as { type: string; value: Uint8Array };
      const desc = registry.getMessage(detail.type);
      assert.ok(desc, `${detail.type} is in the reflected files`);
      const decoded = fromBinary(desc, detail.value) as unknown as { reason: string; domain: string };
      assert.equal(decoded.reason, Reason.EngineUnavailable);
      assert.equal(decoded.domain, VOICE_ERROR_DOMAIN);
    } finally {
      reflection.close();
    }
  });
});
