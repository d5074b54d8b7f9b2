import { Server } from '@grpc/grpc-js';
import type { Config } from '../../config.js';
import { createEdge, type Edge } from '../../edge/edge.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { ServiceRegistration } from '../../service/context.js';
import type { HealthReporter } from '../health-reporter.js';
import { readTlsMaterial, type TlsMaterial } from '../tls.js';
import { adaptService } from './call-adapter.js';
import { createEdgeInterceptor, type EdgeCalls } from './edge-interceptor.js';
import { addHealth } from './health.js';
import { addReflection } from './reflection.js';
import { grpcServiceDefinition } from './service-definition.js';
import { serverCredentials } from './tls.js';

export interface GrpcTransportOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly health: HealthReporter;
  readonly services: readonly ServiceRegistration[];
  /** The edge policy shared with the other transports; by default, one of its own from the config. */
  readonly edge?: Edge;
  /** security.tls as read at start-up; by default read here. */
  readonly tls?: TlsMaterial | undefined;
}

export interface GrpcTransport {
  /** Binds and starts serving; resolves with the bound port (useful with port 0). */
  listen(): Promise<number>;
  /**
   * Graceful drain: health turns NOT_SERVING, new calls are refused with UNAVAILABLE, calls in flight
   * (on every transport of the edge) get `graceMs` to finish, then `flushMs` to stop taking input
   * and deliver what they took (Edge.drain), and are then cancelled; finally the server closes.
   */
  drain(graceMs: number, flushMs?: number): Promise<void>;
  /** Handlers in progress on the edge this transport uses. */
  readonly activeCalls: number;
}

/**
 * The gRPC port (grpc-js): the voice services, health and reflection. The edge interceptor applies
 * the edge policy to every call; the call adapter runs the handlers. Reads the API keys file (for an
 * edge of its own) and the TLS files here, at start-up: a file that is missing or broken throws a
 * ConfigError with one line naming the key.
 */
export function createGrpcTransport(options: GrpcTransportOptions): GrpcTransport {
  const { config, logger, metrics, health } = options;
  const credentials = serverCredentials(
    'tls' in options ? options.tls : readTlsMaterial(config.security.tls),
  );
  const edge = options.edge ?? createEdge({ config, logger, metrics });
  const calls: EdgeCalls = new WeakMap();
  const server = new Server({
    'grpc.max_receive_message_length': config.service.max_message_bytes,
    'grpc.max_send_message_length': config.service.max_message_bytes,
    'grpc.keepalive_time_ms': config.service.keepalive.time_ms,
    'grpc.keepalive_timeout_ms': config.service.keepalive.timeout_ms,
    interceptors: [createEdgeInterceptor(edge, calls)],
  });
  for (const registration of options.services) {
    server.addService(grpcServiceDefinition(registration.service), adaptService(registration, { calls }));
  }
  addHealth(server, health);
  addReflection(server);
  let closed: Promise<void> | undefined;

  const close = () =>
    new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 1000);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });

  return {
    get activeCalls() {
      return edge.activeCalls;
    },
    listen: () =>
      new Promise<number>((resolve, reject) => {
        const address = `${config.service.host.includes(':') ? `[${config.service.host}]` : config.service.host}:${config.service.port}`;
        server.bindAsync(address, credentials, (error, port) => {
          if (error) reject(new Error(`cannot listen on ${address}: ${error.message}`));
          else resolve(port);
        });
      }),
    drain(graceMs, flushMs) {
      closed ??= (async () => {
        health.markDraining();
        await edge.drain(graceMs, flushMs);
        await close();
      })();
      return closed;
    },
  };
}
