import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Code, errorReasonOf, ServingStatus } from '../clients/node/index.js';
import { Transcription } from '../server/gen/cortex/voice/v1/transcription_pb.js';
import { expectError } from './helpers/errors.js';
import { createReflectionClient } from './helpers/reflection-client.js';
import { startTestServer, type TestServer } from './helpers/test-server.js';

const TRANSCRIPTION = 'cortex.voice.v1.Transcription';
const SYNTHESIS = 'cortex.voice.v1.Synthesis';
/** The web port on an ephemeral port, so that these tests never need 8080 free. */
const EPHEMERAL_WEB_PORT = { service: { web_port: 0 } };

async function drain(stream: AsyncIterable<unknown>): Promise<unknown[]> {
  const items: unknown[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

describe('server without engines', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer(EPHEMERAL_WEB_PORT);
  });
  after(() => t.stop());

  it('reports NOT_SERVING for the server and each service while engines are not loaded', async () => {
    for (const service of ['', TRANSCRIPTION, SYNTHESIS]) {
      const response = await t.client.health.check({ service });
      assert.equal(response.status, ServingStatus.NOT_SERVING, `status of "${service}"`);
    }
    const liveness = await t.client.health.check({ service: 'liveness' });
    assert.equal(liveness.status, ServingStatus.SERVING, 'liveness does not wait for models');
    const unknown = await expectError(t.client.health.check({ service: 'no.such.Service' }));
    assert.equal(unknown.code, Code.NotFound);
  });

  it('answers every engine-backed RPC with UNAVAILABLE naming the engine', async () => {
    const calls: Array<[string, () => Promise<unknown>, RegExp]> = [
      [
        'Transcribe',
        () => drain(t.client.transcription.transcribe((async function* () {})())),
        /voice activity detection engine is not loaded/,
      ],
      [
        'TranscribeFile',
        () => t.client.transcription.transcribeFile({}),
        /voice activity detection engine is not loaded/,
      ],
      [
        'Synthesize',
        () => drain(t.client.synthesis.synthesize((async function* () {})())),
        /speech synthesis engine is not loaded/,
      ],
      [
        'SynthesizeText',
        () => drain(t.client.synthesis.synthesizeText({ text: 'hi' })),
        /speech synthesis engine is not loaded/,
      ],
      ['ListVoices', () => t.client.synthesis.listVoices({}), /speech synthesis engine is not loaded/],
    ];
    for (const [name, call, message] of calls) {
      const error = await expectError(call());
      assert.equal(error.code, Code.Unavailable, name);
      assert.match(error.rawMessage, message, name);
      assert.equal(errorReasonOf(error), 'ENGINE_UNAVAILABLE', name);
    }
  });

  it('lists every service through reflection and describes them with their doc comments', async () => {
    const reflection = createReflectionClient(t.address);
    try {
      const services = await reflection.listServices();
      for (const name of [
        TRANSCRIPTION,
        SYNTHESIS,
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
      ]) {
        assert.ok(services.includes(name), `${name} listed in ${services.join(', ')}`);
      }
      const files = await reflection.fileContainingSymbol(TRANSCRIPTION);
      const file = files.find((candidate) => candidate.name === 'cortex/voice/v1/transcription.proto');
      assert.ok(file, 'the file of the service is returned');
      assert.deepEqual(
        file.service[0]?.method.map((method) => method.name),
        Transcription.methods.map((method) => method.name),
        'reflection describes the contract the server was built from',
      );
      const comments =
        file.sourceCodeInfo?.location.map((location) => location.leadingComments).join('\n') ?? '';
      assert.match(comments, /Live transcription/);
      assert.ok(
        files.some((candidate) => candidate.name === 'cortex/voice/v1/audio.proto'),
        'dependencies come along',
      );
      const health = await reflection.fileContainingSymbol('grpc.health.v1.Health');
      assert.ok(health.length > 0);
    } finally {
      reflection.close();
    }
  });

  it('serves Prometheus metrics with the gRPC ecosystem names on their own port', async () => {
    await t.client.health.check({ service: '' });
    await expectError(t.client.synthesis.listVoices({}));
    const response = await fetch(t.metricsUrl);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /text\/plain/);
    const body = await response.text();
    assert.match(
      body,
      /grpc_server_started_total\{grpc_type="unary",grpc_service="cortex\.voice\.v1\.Synthesis",grpc_method="ListVoices",protocol="grpc"\} [1-9]/,
    );
    assert.match(
      body,
      /grpc_server_handled_total\{grpc_type="unary",grpc_service="cortex\.voice\.v1\.Synthesis",grpc_method="ListVoices",protocol="grpc",grpc_code="UNAVAILABLE"\} [1-9]/,
    );
    assert.match(
      body,
      /grpc_server_handled_total\{[^}]*grpc_service="grpc\.health\.v1\.Health",grpc_method="Check",protocol="grpc",grpc_code="OK"\} [1-9]/,
    );
    assert.match(body, /grpc_server_handling_seconds_bucket\{le="0\.005",grpc_type="unary"/);
    assert.match(body, /grpc_server_msg_received_total\{/);
    assert.match(body, /grpc_server_msg_sent_total\{/);
    assert.match(body, /# TYPE voice_active_streams gauge/);
    assert.match(body, /process_resident_memory_bytes \d+/);
    assert.match(body, /nodejs_eventloop_lag_seconds/);
    const other = await fetch(t.metricsUrl.replace('/metrics', '/other'));
    assert.equal(other.status, 404);
  });

  it('logs one JSON line per finished call with the request id, status, duration, peer and bytes', async () => {
    const requestId = `test-${Date.now()}`;
    await t.client.health.check(
      { service: '' },
      { headers: { 'x-request-id': requestId, 'x-api-key': 'super-secret-key' } },
    );
    await expectError(t.client.synthesis.listVoices({}));
    const records = t.logs.records().filter((record) => record.msg === 'call finished');
    const health = records.find((record) => record.requestId === requestId);
    assert.ok(health, 'the given request id is logged');
    assert.equal(health.method, 'grpc.health.v1.Health/Check');
    assert.equal(health.code, 'OK');
    assert.equal(typeof health.durationMs, 'number');
    assert.match(String(health.peer), /127\.0\.0\.1/);
    assert.ok(Number(health.bytesOut) > 0, 'bytes sent are counted');
    const voices = records
      .filter((record) => record.method === 'cortex.voice.v1.Synthesis/ListVoices')
      .at(-1);
    assert.ok(voices);
    assert.equal(voices.code, 'UNAVAILABLE');
    assert.equal(voices.reason, 'ENGINE_UNAVAILABLE');
    assert.match(String(voices.requestId), /^[0-9a-f-]{36}$/, 'a request id is generated when none is given');
    assert.ok(!t.logs.text().includes('super-secret-key'), 'the API key never reaches the logs');
  });

  it('returns the request id with failed calls too', async () => {
    const error = await expectError(
      t.client.synthesis.listVoices({}, { headers: { 'x-request-id': 'failed-call' } }),
    );
    assert.equal(error.metadata.get('x-request-id'), 'failed-call');
  });

  it('returns the request id to the client in the response headers', async () => {
    let header: string | null = null;
    await t.client.health.check(
      { service: '' },
      {
        headers: { 'x-request-id': 'echo-me' },
        onHeader: (headers) => {
          header = headers.get('x-request-id');
        },
      },
    );
    assert.equal(header, 'echo-me');
  });
});

describe('health', () => {
  it('turns SERVING when engines load and NOT_SERVING while draining', async () => {
    const t = await startTestServer(EPHEMERAL_WEB_PORT);
    try {
      const status = async (service: string) => (await t.client.health.check({ service })).status;
      assert.equal(await status(SYNTHESIS), ServingStatus.NOT_SERVING);
      t.server.engines.synthesizer.set(engineStandIn());
      assert.equal(await status(SYNTHESIS), ServingStatus.SERVING);
      assert.equal(await status(''), ServingStatus.NOT_SERVING, 'the whole server waits for every service');
      t.server.engines.vad.set(engineStandIn());
      t.server.engines.recognizer.set(engineStandIn());
      assert.equal(await status(TRANSCRIPTION), ServingStatus.SERVING);
      assert.equal(await status(''), ServingStatus.SERVING);
      t.server.engines.recognizer.markUnavailable('model missing');
      assert.equal(await status(TRANSCRIPTION), ServingStatus.NOT_SERVING);
      assert.equal(await status(''), ServingStatus.NOT_SERVING);
    } finally {
      await t.stop();
    }
  });
});

/** Health only looks at whether a slot holds an engine; this stand-in is never called. */
function engineStandIn(): never {
  return {} as never;
}
