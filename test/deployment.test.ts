import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { type Config, ENV_OVERRIDES, loadConfig } from '../server/config.js';
import { Synthesis } from '../server/gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from '../server/gen/cortex/voice/v1/transcription_pb.js';
import { createMetrics } from '../server/observability/metrics.js';
import { LIVENESS } from '../server/transport/grpc/health.js';
import { copyArguments, healthcheck, parseDockerfile, runCommand } from './helpers/dockerfile.js';
import { repoRoot } from './helpers/paths.js';

/**
 * The deployment files (Dockerfile, compose, Envoy, Kubernetes, systemd, Prometheus, Grafana)
 * checked against the server itself: its defaults, environment variables, health services and
 * metric names. Tools that can validate a file for real (envoy, docker, kubectl, systemd-analyze)
 * are used when present and reported as skipped otherwise.
 */

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML is checked field by field below.
type Yaml = any;

const root = repoRoot();
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const yamlFile = (path: string): Yaml => parseYaml(read(path));

const defaults = loadConfig({ env: {} });
/** The web transport's port: gRPC-Web and Connect for browsers, where Envoy sends them. */
const WEB_PORT = defaults.service.web_port;
const HEALTH_SERVICES = ['', Transcription.typeName, Synthesis.typeName];
/** Variables the server reads (server/config.ts) plus those Node itself or the image use. */
const SERVER_ENV = new Set(['VOICE_CONFIG', ...ENV_OVERRIDES.map((override) => override.variable)]);
const RUNTIME_ENV = new Set(['NODE_ENV']);

const dockerfile = parseDockerfile(read('Dockerfile'));
const runtimeStage = dockerfile.stages.at(-1)!;
const compose: Yaml = yamlFile('docker-compose.yml');
const envoy: Yaml = yamlFile('envoy.yaml');
const k8sDocuments: Yaml[] = readdirSync(join(root, 'deploy/kubernetes'))
  .filter((file) => file.endsWith('.yaml'))
  .flatMap((file) =>
    parseAllDocuments(read(join('deploy/kubernetes', file))).map((document) => {
      assert.deepEqual(document.errors, [], `deploy/kubernetes/${file} is valid YAML`);
      return document.toJS() as Yaml;
    }),
  )
  .filter((document) => document !== null);
const k8s = (kind: string, name?: string): Yaml => {
  const found = k8sDocuments.filter(
    (document) => document.kind === kind && (name === undefined || document.metadata?.name === name),
  );
  assert.equal(found.length, 1, `one ${kind}${name ? ` ${name}` : ''} in deploy/kubernetes`);
  return found[0];
};
const deployment = k8s('Deployment');
const podSpec = deployment.spec.template.spec;
const container = podSpec.containers[0];
const configMap = k8s('ConfigMap');
const unit = parseUnit(read('deploy/systemd/cortex-voice.service'));

/** systemd unit file: section → key → values (a key may repeat). */
function parseUnit(source: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let section: Map<string, string[]> | undefined;
  for (const raw of source.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      sections.set(header[1]!, section);
      continue;
    }
    const [key, ...value] = line.split('=');
    assert.ok(section, `unit line outside a section: ${line}`);
    section.set(key!.trim(), [...(section.get(key!.trim()) ?? []), value.join('=').trim()]);
  }
  return sections;
}
const unitValue = (section: string, key: string): string | undefined => unit.get(section)?.get(key)?.at(-1);

/** "45s", "1m30s", "45" (seconds) → seconds. */
function seconds(value: string | number): number {
  if (typeof value === 'number') return value;
  let total = 0;
  const parts = value.trim().matchAll(/(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?/g);
  for (const [, amount, suffix] of parts) {
    const factor = { ms: 0.001, s: 1, m: 60, min: 60, h: 3600 }[suffix ?? 's'] ?? 1;
    total += Number(amount) * factor;
  }
  return total;
}

/** Writes a config.yaml from a string and loads it the way the server does. */
function loadConfigText(text: string, env: Record<string, string> = {}): Config {
  const file = join(mkdtempSync(join(tmpdir(), 'voice-deploy-')), 'config.yaml');
  writeFileSync(file, text);
  return loadConfig({ file, env });
}

/** KEY=value lines of an env file. */
function envFile(path: string): Record<string, string> {
  const entries: Record<string, string> = {};
  for (const line of read(path).split('\n')) {
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (match) entries[match[1]!] = match[2]!.trim();
  }
  return entries;
}

/** Metric names a PromQL expression reads: identifiers that are not functions, keywords or labels. */
function promqlMetricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const keywords = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);
  const names = new Set<string>();
  for (const match of stripped.matchAll(/[A-Za-z_:][\w:]*/g)) {
    const after = stripped.slice(match.index + match[0].length).trimStart();
    if (after.startsWith('(') || keywords.has(match[0].toLowerCase())) continue;
    names.add(match[0]);
  }
  return [...names];
}

async function serverMetricNames(): Promise<Set<string>> {
  const { registry } = createMetrics();
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram' || String(metric.type) === 'summary') {
      for (const suffix of ['_bucket', '_count', '_sum']) names.add(`${metric.name}${suffix}`);
    }
  }
  return names;
}

function dashboardExpressions(): string[] {
  const dashboard: Yaml = JSON.parse(read('deploy/grafana/dashboards/cortex-voice.json'));
  const exprs: string[] = [];
  const visit = (panels: Yaml[]) => {
    for (const panel of panels ?? []) {
      for (const target of panel.targets ?? []) if (target.expr) exprs.push(target.expr);
      visit(panel.panels);
    }
  };
  visit(dashboard.panels);
  return exprs;
}

const voiceClusters = (): Yaml[] =>
  envoy.static_resources.clusters.filter((cluster: Yaml) => cluster.name.startsWith('cortex_voice'));
/** Native gRPC goes to the grpc-js port; browsers (gRPC-Web, Connect) to the web port. */
const webClusters = (): Yaml[] =>
  voiceClusters().filter((cluster: Yaml) => cluster.name.startsWith('cortex_voice_web'));
const grpcClusters = (): Yaml[] =>
  voiceClusters().filter((cluster: Yaml) => !cluster.name.startsWith('cortex_voice_web'));
const voiceListener = (): Yaml =>
  envoy.static_resources.listeners.find((listener: Yaml) => listener.name === 'voice_tls');
const connectionManager = (): Yaml => voiceListener().filter_chains[0].filters[0].typed_config;
const voiceRoutes = (): Yaml[] => connectionManager().route_config.virtual_hosts[0].routes;
/** Routes that forward (the last one answers 404 itself). */
const forwardingRoutes = (): Yaml[] => voiceRoutes().filter((route: Yaml) => route.route !== undefined);
const clusterNamed = (name: string): Yaml => voiceClusters().find((cluster: Yaml) => cluster.name === name);
const endpointsOf = (cluster: Yaml): Yaml[] =>
  cluster.load_assignment.endpoints.flatMap((group: Yaml) =>
    group.lb_endpoints.map((lb: Yaml) => lb.endpoint),
  );

describe('ports agree with the server defaults', () => {
  const grpcPort = defaults.service.port;
  const metricsPort = defaults.monitoring.prometheus_port;

  it('the Dockerfile exposes the gRPC and metrics ports (and no other than the web port) and health-checks the gRPC one', () => {
    const exposed = runtimeStage.instructions
      .filter((instruction) => instruction.keyword === 'EXPOSE')
      .flatMap((instruction) => instruction.args.split(/\s+/).map((port) => Number(port.split('/')[0])));
    for (const port of [grpcPort, metricsPort]) assert.ok(exposed.includes(port), `EXPOSE ${port}`);
    for (const port of exposed) assert.ok([grpcPort, metricsPort, WEB_PORT].includes(port), `EXPOSE ${port}`);
    const check = runtimeStage.instructions.find((instruction) => instruction.keyword === 'HEALTHCHECK');
    assert.ok(check, 'a HEALTHCHECK');
    const { command } = healthcheck(check.args);
    assert.equal(command[command.indexOf('--address') + 1], `127.0.0.1:${grpcPort}`);
  });

  it('compose publishes the gRPC, web and metrics ports on 127.0.0.1 only, and Prometheus scrapes the metrics port', () => {
    const ports = compose.services.voice.ports as string[];
    const published = ports.map((port) => Number(port.split(':').at(-1)));
    assert.deepEqual(published.sort(), [grpcPort, WEB_PORT, metricsPort].sort());
    for (const port of ports) assert.ok(port.startsWith('127.0.0.1:'), `${port} stays on the host`);
    const service = loadConfig({ file: join(root, 'deploy/compose/config.yaml'), env: {} }).service;
    assert.equal(service.web_enabled, true, 'Envoy sends browsers to the web port');
    assert.equal(service.web_port, WEB_PORT);
    const prometheus: Yaml = yamlFile('deploy/prometheus/prometheus.yml');
    const voiceJob = prometheus.scrape_configs.find((job: Yaml) => job.job_name === 'cortex-voice');
    assert.equal(voiceJob.metrics_path, defaults.monitoring.metrics_endpoint);
    assert.deepEqual(voiceJob.static_configs[0].targets, [`voice:${metricsPort}`]);
  });

  it('Envoy sends native gRPC to the gRPC port and browsers to the web port, health-checked on the gRPC port', () => {
    assert.equal(grpcClusters().length, 3);
    assert.equal(webClusters().length, 3);
    for (const cluster of grpcClusters()) {
      for (const endpoint of endpointsOf(cluster)) {
        assert.equal(endpoint.address.socket_address.port_value, grpcPort, cluster.name);
        assert.equal(endpoint.health_check_config, undefined, `${cluster.name} is checked where it serves`);
      }
    }
    for (const cluster of webClusters()) {
      for (const endpoint of endpointsOf(cluster)) {
        assert.equal(endpoint.address.socket_address.port_value, WEB_PORT, cluster.name);
        // gRPC health checks are served by grpc-js, in the same process as the web port.
        assert.equal(endpoint.health_check_config.port_value, grpcPort, cluster.name);
      }
    }
  });

  it('the Kubernetes pod, Service and scrape annotations use the same ports', () => {
    const ports = Object.fromEntries(
      container.ports.map((port: Yaml) => [port.name, port.containerPort]),
    ) as Record<string, number>;
    assert.deepEqual(ports, { grpc: grpcPort, web: WEB_PORT, metrics: metricsPort });
    assert.equal(container.readinessProbe.grpc.port, grpcPort);
    const annotations = deployment.spec.template.metadata.annotations;
    assert.equal(annotations['prometheus.io/port'], String(metricsPort));
    assert.equal(annotations['prometheus.io/path'], defaults.monitoring.metrics_endpoint);
    const service = k8s('Service', 'cortex-voice');
    const grpc = service.spec.ports.find((port: Yaml) => port.name === 'grpc');
    assert.equal(grpc.port, grpcPort);
    assert.equal(grpc.appProtocol, 'grpc');
    assert.ok(
      service.spec.ports.some((port: Yaml) => port.port === metricsPort && port.targetPort === 'metrics'),
    );
    // Envoy reaches both serving ports of every pod through the headless Service, the web one in h2c.
    for (const name of ['cortex-voice', 'cortex-voice-headless']) {
      const web = k8s('Service', name).spec.ports.find((port: Yaml) => port.name === 'web');
      assert.ok(web, `${name} has a web port`);
      assert.equal(web.port, WEB_PORT);
      assert.equal(web.targetPort, 'web');
      assert.equal(web.appProtocol, 'kubernetes.io/h2c');
      const grpcPortEntry = k8s('Service', name).spec.ports.find((port: Yaml) => port.name === 'grpc');
      assert.equal(grpcPortEntry.port, grpcPort);
    }
    const configured = loadConfigText(configMap.data['config.yaml']);
    assert.equal(configured.service.port, grpcPort);
    assert.equal(configured.service.web_enabled, true, 'Envoy sends browsers to the web port');
    assert.equal(configured.service.web_port, WEB_PORT);
    assert.equal(configured.service.demo_page, false, 'no demo page in production');
    assert.equal(configured.monitoring.prometheus_port, metricsPort);
  });
});

describe('health checks ask the services the server reports', () => {
  it('Envoy checks "", Transcription and Synthesis, and routes each service to its own check', () => {
    for (const clusters of [grpcClusters(), webClusters()]) {
      const checked = clusters.map(
        (cluster: Yaml) => cluster.health_checks[0].grpc_health_check.service_name as string,
      );
      assert.deepEqual([...checked].sort(), [...HEALTH_SERVICES].sort());
    }
    for (const service of [Transcription.typeName, Synthesis.typeName]) {
      const routes = forwardingRoutes().filter(
        (candidate: Yaml) => candidate.match.prefix === `/${service}/`,
      );
      assert.equal(routes.length, 2, `a native and a browser route for ${service}`);
      for (const route of routes) {
        const cluster = clusterNamed(route.route.cluster);
        assert.equal(cluster.health_checks[0].grpc_health_check.service_name, service, route.route.cluster);
      }
    }
  });

  it('Kubernetes readiness asks the whole server; liveness and startup ask the model-independent name', () => {
    assert.deepEqual(container.readinessProbe.grpc, { port: defaults.service.port, service: '' });
    assert.deepEqual(container.livenessProbe.grpc, { port: defaults.service.port, service: LIVENESS });
    assert.deepEqual(container.startupProbe.grpc, { port: defaults.service.port, service: LIVENESS });
  });

  it('the Docker and compose health checks run the CLI health command on the whole server', () => {
    const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string> };
    const cli = pkg.bin.voice!.replace(/^\.\//, '');
    const check = runtimeStage.instructions.find((instruction) => instruction.keyword === 'HEALTHCHECK')!;
    const { command, options } = healthcheck(check.args);
    assert.deepEqual(command.slice(0, 2), ['node', cli]);
    assert.equal(command.at(-1), 'health', 'no service argument: "" (the whole server)');
    assert.deepEqual(compose.services.voice.healthcheck.test, ['CMD', ...command]);
    assert.equal(options.get('interval'), compose.services.voice.healthcheck.interval);
    assert.ok(existsSync(join(root, cli.replace(/^dist\//, '').replace(/\.js$/, '.ts'))), `${cli} is built`);
  });
});

describe('environment variables are ones the server reads', () => {
  const check = (where: string, names: Iterable<string>) => {
    for (const name of names) {
      assert.ok(
        SERVER_ENV.has(name) || RUNTIME_ENV.has(name),
        `${where} sets ${name}, which the server ignores`,
      );
    }
  };

  it('the Dockerfile runtime stage', () => {
    const names = runtimeStage.instructions
      .filter((instruction) => instruction.keyword === 'ENV')
      .flatMap((instruction) => [...instruction.args.matchAll(/(\w+)=/g)].map((match) => match[1]!));
    assert.ok(names.includes('VOICE_MODELS_DIR'));
    check('Dockerfile', names);
  });

  it('compose, its env file example, and the values load', () => {
    const environment = compose.services.voice.environment as Record<string, string>;
    check('docker-compose.yml', Object.keys(environment));
    const secrets = envFile('deploy/compose/voice.env.example');
    check('voice.env.example', Object.keys(secrets));
    const { VOICE_CONFIG: _, ...env } = { ...environment, ...secrets };
    const config = loadConfigText(read('deploy/compose/config.yaml'), env);
    assert.equal(config.performance.workers, Number(environment.MAX_WORKERS));
    assert.equal(config.logging.level, 'info');
    assert.equal(config.security.api_key_required, true, 'API_KEY turns keys on');
  });

  it('Kubernetes env, ConfigMap keys and Secret keys', () => {
    const names = container.env.map((variable: Yaml) => variable.name as string);
    check('deployment.yaml', names);
    const envKeys = Object.keys(configMap.data).filter((key) => key !== 'config.yaml');
    check('configmap.yaml', envKeys);
    const secret = k8s('Secret');
    check('secret.example.yaml', Object.keys(secret.stringData));
    for (const variable of container.env) {
      const ref = variable.valueFrom?.configMapKeyRef ?? variable.valueFrom?.secretKeyRef;
      if (!ref) continue;
      const source = variable.valueFrom.configMapKeyRef ? configMap : secret;
      assert.equal(ref.name, source.metadata.name, variable.name);
      assert.ok(ref.key in (source.data ?? source.stringData), `${ref.key} in ${source.metadata.name}`);
    }
    const env: Record<string, string> = { ...secret.stringData };
    for (const key of envKeys) env[key] = configMap.data[key];
    const config = loadConfigText(configMap.data['config.yaml'], env);
    assert.deepEqual(config.service.cors_origins, configMap.data.CORS_ORIGINS.split(','));
  });

  it('the systemd unit', () => {
    const names = (unit.get('Service')?.get('Environment') ?? []).map((entry) => entry.split('=')[0]!);
    assert.ok(names.includes('VOICE_MODELS_DIR'));
    check('cortex-voice.service', names);
  });
});

describe('configuration files load in the server', () => {
  for (const path of ['config.example.yaml', 'deploy/compose/config.yaml']) {
    it(`${path} loads with loadConfig`, () => {
      assert.doesNotThrow(() => loadConfig({ file: join(root, path), env: {} }));
    });
  }

  it('the ConfigMap config.yaml loads and is mounted where VOICE_CONFIG points', () => {
    assert.doesNotThrow(() => loadConfigText(configMap.data['config.yaml']));
    const mount = container.volumeMounts.find((volume: Yaml) => volume.name === 'config');
    const volume = podSpec.volumes.find((candidate: Yaml) => candidate.name === 'config');
    assert.equal(volume.configMap.name, configMap.metadata.name);
    const path = `${mount.mountPath}/${volume.configMap.items[0].path}`;
    const voiceConfig = container.env.find((variable: Yaml) => variable.name === 'VOICE_CONFIG');
    assert.equal(voiceConfig.value, path);
    assert.equal(volume.configMap.items[0].key, 'config.yaml');
  });

  it('a key the server does not know is refused, so the loads above prove something', () => {
    assert.throws(() => loadConfigText('service:\n  prot: 8899\n'), /unknown key service\.prot/);
  });
});

/**
 * What a drain may take after SIGTERM beyond its grace and flush: the 2 s for cancelled calls to
 * settle, then closing the ports and the model workers (README, docs/deployment.md).
 */
const DRAIN_MARGIN_SECONDS = 5;
/** Grace + flush + margin for the service section of a config. */
const drainBudget = (service: Config['service']) =>
  service.drain_grace_seconds + service.drain_flush_seconds + DRAIN_MARGIN_SECONDS;

describe('stop grace periods outlast the drain', () => {
  it('Kubernetes: preStop pause + drain grace + flush + margin <= terminationGracePeriodSeconds < liveness window', () => {
    const { service } = loadConfigText(configMap.data['config.yaml']);
    assert.ok(service.drain_flush_seconds > 0, 'the ConfigMap gives calls time to flush');
    const pause = Number(container.lifecycle.preStop.exec.command[1]);
    assert.ok(
      pause + drainBudget(service) <= podSpec.terminationGracePeriodSeconds,
      `${pause} + ${drainBudget(service)} s must fit in terminationGracePeriodSeconds ${podSpec.terminationGracePeriodSeconds}`,
    );
    const liveness = container.livenessProbe;
    assert.ok(liveness.periodSeconds * liveness.failureThreshold > podSpec.terminationGracePeriodSeconds);
  });

  it('compose stop_grace_period, the systemd TimeoutStopSec and `docker stop -t` cover grace + flush + margin', () => {
    const composeService = loadConfig({ file: join(root, 'deploy/compose/config.yaml'), env: {} }).service;
    const composeGrace = seconds(compose.services.voice.stop_grace_period);
    assert.ok(composeGrace >= drainBudget(composeService), `compose: ${composeGrace} s`);
    assert.ok(
      seconds(compose.services.envoy.stop_grace_period) >= composeGrace,
      'Envoy outlives the drain of the calls it forwards',
    );
    assert.equal(compose.services.voice.stop_signal, 'SIGTERM');
    // The unit runs with the defaults unless /etc/cortex-voice/config.yaml changes them.
    const unitGrace = seconds(unitValue('Service', 'TimeoutStopSec')!);
    assert.ok(unitGrace >= drainBudget(defaults.service), `systemd: ${unitGrace} s`);
    assert.equal(unitValue('Service', 'KillSignal'), 'SIGTERM');
    const stopSignal = runtimeStage.instructions.find((instruction) => instruction.keyword === 'STOPSIGNAL');
    assert.equal(stopSignal?.args, 'SIGTERM');
    for (const [file, text] of [
      ['Dockerfile', read('Dockerfile')],
      ['docs/deployment.md', read('docs/deployment.md')],
    ] as const) {
      const advised = /docker stop -t (\d+)/.exec(text);
      assert.ok(advised, `${file} says how long docker stop must wait`);
      assert.ok(Number(advised[1]) >= drainBudget(defaults.service), `${file}: docker stop -t ${advised[1]}`);
    }
  });

  it('Envoy lets streams run at least as long as the server does', () => {
    for (const route of forwardingRoutes()) {
      assert.equal(route.route.timeout, '0s', 'no overall timeout on streaming routes');
      const limit = route.route.max_stream_duration;
      assert.ok(seconds(limit.max_stream_duration) >= defaults.service.max_stream_duration_seconds);
      assert.ok(seconds(limit.grpc_timeout_header_max) >= defaults.service.max_stream_duration_seconds);
      assert.ok(seconds(route.route.idle_timeout) >= 60);
    }
  });
});

describe('metric names exist in the server registry', () => {
  it('the PromQL reader finds metric names and skips functions, labels and ranges', () => {
    assert.deepEqual(
      promqlMetricNames(
        'histogram_quantile(0.95, sum by (le, grpc_method) (rate(a_seconds_bucket{x="y"}[$__rate_interval]))) / b_total',
      ),
      ['a_seconds_bucket', 'b_total'],
    );
  });

  it('every metric of the Grafana dashboard is one the server exports', async () => {
    const known = await serverMetricNames();
    const exprs = dashboardExpressions();
    const used = new Set(exprs.flatMap(promqlMetricNames));
    for (const name of used)
      assert.ok(known.has(name), `dashboard uses ${name}, which the server does not export`);
    for (const required of [
      'grpc_server_started_total',
      'grpc_server_handling_seconds_bucket',
      'grpc_server_handled_total',
      'voice_active_streams',
      'voice_worker_queue_depth',
      'voice_workers_busy',
      'voice_inference_seconds_bucket',
      'process_resident_memory_bytes',
      'voice_rejected_calls_total',
      'voice_tts_cache_requests_total',
    ]) {
      assert.ok(used.has(required), `the dashboard shows ${required}`);
    }
    assert.ok(
      exprs.some((expr) => /grpc_server_handled_total\{[^}]*grpc_code!="OK"/.test(expr)),
      'errors are the calls not ending OK',
    );
  });

  it('every metric named in the deployment docs is one the server exports', async () => {
    const known = await serverMetricNames();
    const spans = ['docs/deployment.md', 'deploy/kubernetes/README.md'].flatMap((path) =>
      [...read(path).matchAll(/`([^`\n]+)`/g)].map((match) => match[1]!),
    );
    const metricLike = /^(grpc_server|voice|process|nodejs)_[a-z_]+$/;
    const names = spans
      .filter((span) => /[({]/.test(span) || metricLike.test(span))
      .flatMap(promqlMetricNames)
      .filter((name) => metricLike.test(name));
    assert.ok(names.length >= 4, `found ${names.join(', ')}`);
    for (const name of names)
      assert.ok(known.has(name), `the docs name ${name}, which the server does not export`);
  });

  it('a misspelt metric would be caught', async () => {
    const known = await serverMetricNames();
    assert.ok(!known.has('voice_active_stream'));
    assert.ok(known.has('voice_inference_seconds_count') && known.has('nodejs_heap_size_used_bytes'));
  });
});

describe('Envoy configuration', () => {
  it('filters run local_ratelimit then router: no grpc_web, cors or buffering filter', () => {
    const names = connectionManager().http_filters.map((filter: Yaml) => filter.name);
    assert.deepEqual(names, ['envoy.filters.http.local_ratelimit', 'envoy.filters.http.router']);
  });

  it('native gRPC goes to grpc-js; gRPC-Web, Connect and preflights on the API paths to the web port; nothing else', () => {
    const routes = voiceRoutes();
    const native = routes.filter((route: Yaml) => route.match.grpc !== undefined);
    const browser = forwardingRoutes().filter((route: Yaml) => route.match.grpc === undefined);
    assert.deepEqual(
      native.map((route: Yaml) => route.match.prefix),
      [`/${Transcription.typeName}/`, `/${Synthesis.typeName}/`, '/'],
    );
    // Routes match in order: every native route comes before any browser route.
    assert.ok(routes.indexOf(native.at(-1)) < routes.indexOf(browser[0]));
    for (const route of native) assert.ok(grpcClusters().includes(clusterNamed(route.route.cluster)));
    for (const route of browser) {
      assert.ok(webClusters().includes(clusterNamed(route.route.cluster)), route.match.prefix);
      assert.match(route.match.prefix, /^\/(cortex\.voice\.v1\.|grpc\.health\.v1\.Health\/)/);
    }
    assert.deepEqual(routes.at(-1), { match: { prefix: '/' }, direct_response: { status: 404 } });
  });

  it('upstream clusters speak HTTP/2 and have health checks, circuit breakers and outlier detection', () => {
    for (const cluster of voiceClusters()) {
      const options =
        cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
      assert.ok(options.explicit_http_config.http2_protocol_options, `${cluster.name} uses HTTP/2`);
      assert.ok(cluster.health_checks[0].grpc_health_check, `${cluster.name} is health-checked`);
      assert.ok(cluster.circuit_breakers.thresholds.length > 0);
      assert.ok(cluster.outlier_detection);
    }
  });

  it('Envoy leaves CORS to the service: no CORS policy of its own; compose and Kubernetes give the same CORS_ORIGINS', () => {
    const text = JSON.stringify(envoy);
    assert.doesNotMatch(text, /envoy\.filters\.http\.cors|CorsPolicy|allow_origin_string_match/);
    const origins = compose.services.voice.environment.CORS_ORIGINS.split(',');
    assert.ok(origins.length > 0 && origins.every((origin: string) => origin.startsWith('https://')));
    assert.deepEqual(configMap.data.CORS_ORIGINS.split(','), origins);
    // Envoy's own refusals (rate limit, 503, 404) stay readable by a page: they carry no data.
    const mapper = connectionManager().local_reply_config.mappers[0];
    assert.equal(mapper.filter.header_filter.header.name, 'origin');
    const added = Object.fromEntries(
      mapper.headers_to_add.map((entry: Yaml) => [entry.header.key, entry.header.value]),
    );
    assert.equal(added['access-control-allow-origin'], '*');
    assert.match(added['access-control-expose-headers'], /grpc-status/);
  });

  it('browser Transcription calls get a rate-limit bucket per connection, enough for a live microphone', () => {
    const route = forwardingRoutes().find(
      (candidate: Yaml) => candidate.route.cluster === 'cortex_voice_web_transcription',
    );
    const limit = route.typed_per_filter_config['envoy.filters.http.local_ratelimit'];
    assert.equal(limit.local_rate_limit_per_downstream_connection, true);
    const perSecond = limit.token_bucket.tokens_per_fill / seconds(limit.token_bucket.fill_interval);
    // The browser SDK sends ~100 ms chunks: 10 calls a second per microphone, plus headroom.
    assert.ok(perSecond >= 20, `${perSecond}/s`);
    assert.equal(limit.rate_limited_as_resource_exhausted, true);
    // Its events pause while the speaker does, so it is not reset after the usual 300 s.
    assert.ok(
      seconds(route.route.idle_timeout) >= seconds(route.route.max_stream_duration.max_stream_duration),
    );
  });

  it('the rate limit is 10 calls/s with bursts of 20, answered as RESOURCE_EXHAUSTED', () => {
    const limit = connectionManager().http_filters.find(
      (filter: Yaml) => filter.name === 'envoy.filters.http.local_ratelimit',
    ).typed_config;
    assert.deepEqual(limit.token_bucket, { max_tokens: 20, tokens_per_fill: 10, fill_interval: '1s' });
    assert.equal(limit.rate_limited_as_resource_exhausted, true);
    assert.equal(limit.filter_enforced.default_value.numerator, 100);
    assert.equal(limit.response_headers_to_add[0].header.key, 'x-local-rate-limit');
  });

  it('TLS 1.2–1.3 with ALPN h2 and http/1.1; admin on loopback; JSON access log with gRPC status', () => {
    const tls = voiceListener().filter_chains[0].transport_socket.typed_config.common_tls_context;
    assert.equal(tls.tls_params.tls_minimum_protocol_version, 'TLSv1_2');
    assert.equal(tls.tls_params.tls_maximum_protocol_version, 'TLSv1_3');
    assert.deepEqual(tls.alpn_protocols, ['h2', 'http/1.1']);
    assert.equal(envoy.admin.address.socket_address.address, '127.0.0.1');
    const format = connectionManager().access_log[0].typed_config.log_format.json_format;
    const values = Object.values(format) as string[];
    assert.ok(values.includes('%TRAILER(grpc-status)%'));
    assert.ok(values.some((value) => value.startsWith('%GRPC_STATUS')));
    assert.ok(values.includes('%REQ(X-REQUEST-ID)%') && values.includes('%UPSTREAM_HOST%'));
  });
});

describe('Dockerfile', () => {
  it('builds in one stage and runs production dependencies only, as a non-root user', () => {
    assert.equal(dockerfile.stages.length, 2);
    assert.match(dockerfile.stages[0]!.base, /^node:20-bookworm-slim$/);
    assert.equal(runtimeStage.base, dockerfile.stages[0]!.base);
    const runs = runtimeStage.instructions.filter((instruction) => instruction.keyword === 'RUN');
    assert.ok(
      runs.some((run) => /\bnpm ci\b.*--omit=dev/.test(runCommand(run.args))),
      'npm ci --omit=dev',
    );
    const user = runtimeStage.instructions.filter((instruction) => instruction.keyword === 'USER').at(-1);
    assert.ok(user, 'a USER');
    assert.ok(!/^(root|0)(:|$)/.test(user.args), `runs as ${user.args}`);
    const copies = runtimeStage.instructions
      .filter((instruction) => instruction.keyword === 'COPY')
      .map((instruction) => copyArguments(instruction.args));
    assert.ok(
      copies.some((copy) => copy.sources.includes('.npmrc')),
      '.npmrc skips onnxruntime-node downloads',
    );
    assert.ok(copies.some((copy) => copy.from === 'build' && copy.sources[0] === '/app/dist'));
    for (const copy of copies.filter((candidate) => candidate.from === undefined)) {
      for (const source of copy.sources) assert.ok(existsSync(join(root, source)), `${source} exists`);
    }
    const cmd = runtimeStage.instructions.find((instruction) => instruction.keyword === 'CMD');
    assert.deepEqual(JSON.parse(cmd!.args), ['node', 'dist/server/main.js']);
  });

  it('the build stage compiles with the package build script and no code generation', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    assert.match(pkg.scripts.build!, /^tsc\b/);
    const runs = dockerfile.stages[0]!.instructions.filter((instruction) => instruction.keyword === 'RUN');
    assert.ok(runs.some((run) => runCommand(run.args) === 'npm run build'));
    const copies = dockerfile.stages[0]!.instructions.filter(
      (instruction) => instruction.keyword === 'COPY',
    ).flatMap((instruction) => copyArguments(instruction.args).sources);
    for (const source of copies) assert.ok(existsSync(join(root, source)), `${source} exists`);
    assert.ok(copies.includes('server') && copies.includes('clients'));
  });

  it('.dockerignore keeps secrets and local state out of the build context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    for (const entry of ['node_modules', 'dist', '.git', 'models', '.env', '*.key']) {
      assert.ok(ignored.includes(entry), `.dockerignore lists ${entry}`);
    }
  });
});

describe('compose, Kubernetes and systemd settings from the deployment guide', () => {
  it('compose: resources, log rotation, restart, Envoy after a healthy service, monitoring profile', () => {
    const voice = compose.services.voice;
    assert.deepEqual(voice.deploy.resources, {
      limits: { cpus: '4', memory: '8G' },
      reservations: { cpus: '2', memory: '4G' },
    });
    assert.deepEqual(voice.logging, {
      driver: 'json-file',
      options: { 'max-size': '100m', 'max-file': '10' },
    });
    assert.equal(voice.restart, 'unless-stopped');
    assert.equal(compose.services.envoy.depends_on.voice.condition, 'service_healthy');
    assert.ok((compose.services.envoy.volumes as string[]).includes('./envoy.yaml:/etc/envoy/envoy.yaml:ro'));
    for (const name of ['prometheus', 'grafana']) {
      assert.deepEqual(compose.services[name].profiles, ['monitoring']);
      for (const volume of compose.services[name].volumes as string[]) {
        const source = volume.split(':')[0]!;
        if (source.startsWith('./')) assert.ok(existsSync(join(root, source)), `${source} exists`);
      }
    }
    const envoyAddress = compose.services.envoy.networks.voice_net.ipv4_address;
    const trusted = loadConfig({ file: join(root, 'deploy/compose/config.yaml'), env: {} }).security
      .trusted_proxies;
    assert.deepEqual(trusted, [`${envoyAddress}/32`], 'only Envoy may name the client');
  });

  it('Kubernetes: resources, autoscaling, disruption budget, security context, labels', () => {
    assert.deepEqual(container.resources, {
      requests: { cpu: '2', memory: '4Gi' },
      limits: { cpu: '4', memory: '8Gi' },
    });
    const hpa = k8s('HorizontalPodAutoscaler');
    assert.equal(hpa.apiVersion, 'autoscaling/v2');
    assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
    assert.equal(hpa.spec.minReplicas, 2);
    assert.equal(hpa.spec.maxReplicas, 10);
    const targets = Object.fromEntries(
      hpa.spec.metrics.map((metric: Yaml) => [
        metric.resource.name,
        metric.resource.target.averageUtilization,
      ]),
    );
    assert.deepEqual(targets, { cpu: 70, memory: 80 });
    const pdb = k8s('PodDisruptionBudget');
    assert.equal(pdb.spec.minAvailable, 1);
    const labels = deployment.spec.template.metadata.labels;
    for (const selector of [
      deployment.spec.selector.matchLabels,
      pdb.spec.selector.matchLabels,
      ...k8sDocuments
        .filter((document) => document.kind === 'Service')
        .map((service) => service.spec.selector),
    ]) {
      for (const [key, value] of Object.entries(selector)) assert.equal(labels[key], value);
    }
    assert.equal(podSpec.securityContext.runAsNonRoot, true);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    const models = podSpec.volumes.find((volume: Yaml) => volume.name === 'models');
    assert.equal(models.persistentVolumeClaim.claimName, k8s('PersistentVolumeClaim').metadata.name);
    assert.ok(container.startupProbe, 'a startup probe');
  });

  it('systemd: ExecStart, restart, limits and sandboxing, with W^X left off for V8', () => {
    assert.match(
      unitValue('Service', 'ExecStart')!,
      /dist\/server\/main\.js --config \/etc\/cortex-voice\/config\.yaml$/,
    );
    assert.equal(unitValue('Service', 'Restart'), 'on-failure');
    assert.equal(unitValue('Service', 'MemoryMax'), '8G');
    assert.equal(unitValue('Service', 'CPUQuota'), '400%');
    assert.equal(unitValue('Service', 'NoNewPrivileges'), 'yes');
    assert.equal(unitValue('Service', 'ProtectSystem'), 'strict');
    assert.equal(unitValue('Service', 'CapabilityBoundingSet'), '');
    assert.equal(unitValue('Service', 'MemoryDenyWriteExecute'), 'no');
    assert.equal(unitValue('Service', 'EnvironmentFile'), '-/etc/cortex-voice/env');
  });
});

const has = (command: string, args: string[]) => {
  const result = spawnSync(command, args, { stdio: 'ignore', timeout: 15_000 });
  return result.error === undefined && result.status === 0;
};
const envoyMissing = !has('envoy', ['--version']);
const dockerMissing = !has('docker', ['info']);
const kubectlMissing = !has('kubectl', ['version', '--request-timeout=5s']);
const systemdAnalyzeMissing = !has('systemd-analyze', ['--version']);

describe('validation by the real tools, where installed', () => {
  it('envoy --mode validate accepts envoy.yaml', { skip: envoyMissing && 'envoy is not installed' }, () => {
    execFileSync('envoy', ['--mode', 'validate', '-c', join(root, 'envoy.yaml')], { stdio: 'pipe' });
  });

  it('docker build --check accepts the Dockerfile', {
    skip: dockerMissing && 'no Docker engine (docker info fails)',
  }, () => {
    execFileSync('docker', ['build', '--check', root], { stdio: 'pipe', timeout: 600_000 });
  });

  it('kubectl accepts the manifests (client dry run)', {
    skip: kubectlMissing && 'kubectl is missing or reaches no cluster',
  }, () => {
    execFileSync('kubectl', ['apply', '--dry-run=client', '-f', join(root, 'deploy/kubernetes')], {
      stdio: 'pipe',
    });
  });

  it('systemd-analyze verify finds no unknown or invalid setting in the unit', {
    skip: systemdAnalyzeMissing && 'systemd-analyze is not installed',
  }, () => {
    // The unit names /usr/bin/node; verify checks that it exists, so point it at this Node.
    const dir = mkdtempSync(join(tmpdir(), 'voice-unit-'));
    const file = join(dir, 'cortex-voice.service');
    writeFileSync(
      file,
      read('deploy/systemd/cortex-voice.service').replaceAll('/usr/bin/node', process.execPath),
    );
    const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 30_000 });
    const complaints = `${result.stdout}${result.stderr}`
      .split('\n')
      .filter((line) => line.includes('cortex-voice.service'));
    assert.deepEqual(complaints, []);
    assert.equal(result.status, 0, result.stderr);
  });
});
