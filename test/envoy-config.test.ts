import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { anyValues, checkEnvoyConfig } from './helpers/envoy-check.js';
import { formatProblem, type Problem } from './helpers/envoy-decode.js';
import { envoySchema, patchValidateProto } from './helpers/envoy-schema.js';
import { repoRoot } from './helpers/paths.js';

/**
 * envoy.yaml checked against Envoy's own v3 API, without the envoy binary: decoded strictly as
 * envoy.config.bootstrap.v3.Bootstrap with the protos @grpc/grpc-js-xds ships, every typed_config
 * unpacked by its @type, then checked against the protoc-gen-validate rules in those protos.
 * The negative cases edit a copy of the file and expect each mistake with its path and line.
 */

const root = repoRoot();
const original = readFileSync(join(root, 'envoy.yaml'), 'utf8');

const show = (problems: readonly Problem[]) => problems.map((problem) => formatProblem(problem)).join('\n');

/** A copy of envoy.yaml with each `from` (which must occur) replaced once by `to`. */
function edited(...edits: [from: string, to: string][]): string {
  let text = original;
  for (const [from, to] of edits) {
    assert.ok(text.includes(from), `envoy.yaml contains ${JSON.stringify(from)}`);
    text = text.replace(from, to);
  }
  return text;
}

/** The 1-based line on which `fragment` first occurs in `text`. */
function lineOf(text: string, fragment: string): number {
  const index = text.indexOf(fragment);
  assert.ok(index >= 0, `${JSON.stringify(fragment)} occurs`);
  return text.slice(0, index).split('\n').length;
}

const HCM = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';
const RATE_LIMIT = `${HCM}.http_filters[0].typed_config`;
const ROUTER = `${HCM}.http_filters[1].typed_config`;

function expectProblem(
  problems: readonly Problem[],
  expected: { path: string; line: number; message: RegExp },
): void {
  const found = problems.find((problem) => problem.path === expected.path);
  assert.ok(found, `a problem at ${expected.path}; got:\n${show(problems)}`);
  assert.equal(found.line, expected.line, formatProblem(found));
  assert.match(found.message, expected.message);
}

describe('envoy.yaml against the Envoy v3 API', () => {
  it('decodes strictly as envoy.config.bootstrap.v3.Bootstrap, with no deprecated field', (t) => {
    const started = performance.now();
    const schema = envoySchema();
    const loaded = performance.now();
    const check = checkEnvoyConfig(original);
    const checked = performance.now();
    t.diagnostic(
      `schema ${schema.built ? 'built' : 'read from cache'} in ${Math.round(loaded - started)} ms ` +
        `(${schema.files.length} files, @grpc/grpc-js-xds ${schema.xdsVersion}); ` +
        `decode and rules in ${Math.round(checked - loaded)} ms`,
    );
    assert.deepEqual(show(check.decode), '', 'no unknown field, wrong type or bad @type');
    assert.deepEqual(show(check.warnings), '', 'no deprecated field or value');
    assert.equal(check.message.desc.typeName, 'envoy.config.bootstrap.v3.Bootstrap');
  });

  it("meets the protoc-gen-validate rules of Envoy's protos", () => {
    assert.deepEqual(show(checkEnvoyConfig(original).rules), '');
  });

  it('resolves every typed_config by its @type', () => {
    const anys = anyValues(checkEnvoyConfig(original).message);
    for (const any of anys) assert.ok(any.message, `${any.at.path} (${any.typeUrl}) is decoded`);
    const types = new Set(anys.map((any) => any.typeUrl.replace('type.googleapis.com/', '')));
    for (const type of [
      'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
      'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
      'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',
      'envoy.extensions.filters.http.router.v3.Router',
      'envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
    ]) {
      assert.ok(types.has(type), `${type} is used and resolved`);
    }
  });

  it('builds the schema from every shipped envoy/ proto whose imports are shipped', () => {
    const schema = envoySchema();
    assert.ok(schema.files.includes('envoy/config/bootstrap/v3/bootstrap.proto'));
    assert.ok(schema.files.includes('validate/validate.proto'));
    for (const left of [
      'envoy/config/trace/v3/opencensus.proto',
      'envoy/config/trace/v3/trace.proto',
      'envoy/extensions/access_loggers/open_telemetry/v3/logs_service.proto',
    ]) {
      assert.ok(schema.skipped.includes(left), `${left} is left out`);
    }
    assert.ok(schema.files.length > 300, `${schema.files.length} files`);
    assert.ok(schema.registry.getMessage('envoy.extensions.filters.http.grpc_web.v3.GrpcWeb'));
  });

  it("adds upstream protoc-gen-validate's ignore_empty numbers to the packaged validate.proto", () => {
    const packaged = readFileSync(
      join(root, 'node_modules/@grpc/grpc-js-xds/deps/protoc-gen-validate/validate/validate.proto'),
      'utf8',
    );
    const patched = patchValidateProto(packaged);
    const field = (message: string) =>
      new RegExp(`message ${message} \\{[^]*?ignore_empty = (\\d+);[^]*?\\n\\}`).exec(patched)?.[1];
    assert.equal(field('StringRules'), '26');
    assert.equal(field('BytesRules'), '14');
    assert.equal(field('RepeatedRules'), '5');
    assert.equal(field('MapRules'), '6');
    assert.equal(field('UInt32Rules'), '8');
    assert.equal(patchValidateProto(patched), patched, 'patching twice changes nothing');
  });
});

describe('mistakes in a copy of envoy.yaml are reported with their path and line', () => {
  it('an unknown field, with the field it resembles', () => {
    const text = edited(['      lb_policy: LEAST_REQUEST', '      lb_polcy: LEAST_REQUEST']);
    const { decode } = checkEnvoyConfig(text);
    assert.equal(decode.length, 1, show(decode));
    expectProblem(decode, {
      path: 'static_resources.clusters[0].lb_polcy',
      line: lineOf(text, 'lb_polcy'),
      message:
        /^unknown field "lb_polcy" in envoy\.config\.cluster\.v3\.Cluster \(did you mean "lb_policy"\?\)$/,
    });
    assert.equal(
      formatProblem(decode[0]!),
      `envoy.yaml:${lineOf(text, 'lb_polcy')}:7 ${decode[0]!.path}: ${decode[0]!.message}`,
    );
  });

  it('an unknown field inside a typed_config, found through its @type', () => {
    // The filter's own setting, not the route's override (which is indented further).
    const typo = 'rate_limited_as_resource_exausted: true';
    const text = edited([
      '\n                      rate_limited_as_resource_exhausted: true',
      `\n                      ${typo}`,
    ]);
    expectProblem(checkEnvoyConfig(text).decode, {
      path: `${RATE_LIMIT}.rate_limited_as_resource_exausted`,
      line: lineOf(text, typo),
      message:
        /unknown field "rate_limited_as_resource_exausted" in envoy\.extensions\.filters\.http\.local_ratelimit\.v3\.LocalRateLimit/,
    });
  });

  it('wrong types: a number for a string, a bare number for a Duration, an unknown enum value', () => {
    const text = edited(
      ['                stat_prefix: voice\n', '                stat_prefix: 42\n'],
      ['      connect_timeout: 2s', '      connect_timeout: 2'],
      ['tls_minimum_protocol_version: TLSv1_2', 'tls_minimum_protocol_version: TLSv1_5'],
    );
    const { decode, rules } = checkEnvoyConfig(text);
    assert.equal(decode.length, 3, show(decode));
    assert.equal(show(rules), '', 'a value that did not decode is not reported again as missing');
    expectProblem(decode, {
      path: `${HCM}.stat_prefix`,
      line: lineOf(text, 'stat_prefix: 42'),
      message:
        /HttpConnectionManager\.stat_prefix \(string\): expected a string, got the number 42 \(quote it\)/,
    });
    expectProblem(decode, {
      path: 'static_resources.clusters[0].connect_timeout',
      line: lineOf(text, 'connect_timeout: 2\n'),
      message:
        /Cluster\.connect_timeout \(Duration\): expected a duration string such as "1\.5s", got the number 2/,
    });
    expectProblem(decode, {
      path: 'static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_params.tls_minimum_protocol_version',
      line: lineOf(text, 'TLSv1_5'),
      message:
        /"TLSv1_5" is not a value of enum envoy\.extensions\.transport_sockets\.tls\.v3\.TlsParameters\.TlsProtocol/,
    });
  });

  it('a bad @type', () => {
    const text = edited([
      'envoy.extensions.filters.http.router.v3.Router',
      'envoy.extensions.filters.http.router.v3.Routr',
    ]);
    expectProblem(checkEnvoyConfig(text).decode, {
      path: `${ROUTER}["@type"]`,
      line: lineOf(text, 'Routr'),
      message:
        /^bad @type "type\.googleapis\.com\/envoy\.extensions\.filters\.http\.router\.v3\.Routr": Envoy's API has no message/,
    });
  });

  it('missing required fields: a required message and an empty proto3 string', () => {
    const text = edited(
      ['\n                        fill_interval: 1s\n', '\n'],
      ['                stat_prefix: voice\n', ''],
    );
    const { decode, rules } = checkEnvoyConfig(text);
    assert.equal(show(decode), '', 'still decodes');
    assert.equal(rules.length, 2, show(rules));
    expectProblem(rules, {
      path: `${RATE_LIMIT}.token_bucket.fill_interval`,
      line: lineOf(text, 'max_tokens: 20'),
      message: /^fill_interval is required \(envoy\.type\.v3\.TokenBucket\)$/,
    });
    expectProblem(rules, {
      path: `${HCM}.stat_prefix`,
      line: lineOf(
        text,
        '"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager',
      ),
      message: /^stat_prefix must not be empty/,
    });
  });

  it('ranges and oneofs: a port above 65535, two members of one oneof', () => {
    const text = edited(
      [
        'socket_address: { address: 0.0.0.0, port_value: 8443 }',
        'socket_address: { address: 0.0.0.0, port_value: 70000 }',
      ],
      [
        '                stat_prefix: voice\n',
        '                stat_prefix: voice\n                rds: { route_config_name: voice_routes }\n',
      ],
    );
    const { decode, rules } = checkEnvoyConfig(text);
    expectProblem(rules, {
      path: 'static_resources.listeners[0].address.socket_address.port_value',
      line: lineOf(text, '70000'),
      message: /^port_value must be <= 65535, got 70000$/,
    });
    expectProblem(decode, {
      path: `${HCM}.route_config`,
      line: lineOf(text, '                route_config:'),
      message: /"route_config" and "rds" are both set, but only one member of oneof route_specifier may be/,
    });
  });

  it('every mistake at once, not only the first', () => {
    const text = edited(
      ['      lb_policy: LEAST_REQUEST', '      lb_polcy: LEAST_REQUEST'],
      ['                stat_prefix: voice\n', '                stat_prefix: 42\n'],
      ['envoy.extensions.filters.http.router.v3.Router', 'envoy.extensions.filters.http.router.v3.Routr'],
      ['TLSv1_2', 'TLSv1_5'],
    );
    const { decode } = checkEnvoyConfig(text);
    assert.equal(decode.length, 4, show(decode));
    const lines = decode.map((problem) => problem.line);
    assert.deepEqual(
      lines,
      [...lines].sort((a, b) => a - b),
      'in document order',
    );
  });

  it('a YAML syntax error, with its line', () => {
    const text = edited(['      connect_timeout: 2s', '      connect_timeout: [2s']);
    const { decode } = checkEnvoyConfig(text);
    assert.ok(
      decode.some((problem) => problem.message.startsWith('YAML:')),
      show(decode),
    );
    assert.ok(decode[0]!.line >= lineOf(text, 'connect_timeout: [2s'), formatProblem(decode[0]!));
  });

  it('protobuf JSON names are accepted like the proto names', () => {
    const text = edited(['                stat_prefix: voice\n', '                statPrefix: voice\n']);
    const check = checkEnvoyConfig(text);
    assert.equal(show([...check.decode, ...check.rules]), '');
  });
});
