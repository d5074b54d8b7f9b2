import { Server } from '@grpc/grpc-js';
import type { Config } from '../../config.js';
import { Reason, VoiceError } from '../../errors.js';
import type { Logger } from '../../observability/logger.js';
import type { Metrics } from '../../observability/metrics.js';
import type { ServiceRegistration } from '../../service/context.js';
import { loadApiKeys } from './api-keys.js';
import { ActiveCalls, adaptService } from './call-adapter.js';
import { HEALTH_SERVICE, type HealthReporter } from './health.js';
import { createObserveInterceptor } from './observe-interceptor.js';
import { addReflection } from './reflection.js';
import { createSecurityInterceptor } from './security-interceptor.js';
import { grpcServiceDefinition } from './service-definition.js';
import { serverCredentials } from './tls.js';

export interface GrpcTransportOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly health: HealthReporter;
  readonly services: readonly ServiceRegistration[];
}

export interface GrpcTransport {
  /** Binds and starts serving; resolves with the bound port (useful with port 0). */
  listen(): Promise<number>;
  /**
   * Graceful drain: health turns NOT_SERVING, new calls are refused with UNAVAILABLE, calls in flight
   * get `graceMs` to finish and are then cancelled; finally the server closes.
   */
  drain(graceMs: number): Promise<void>;
  readonly activeCalls: number;
}

/**
 * Builds the gRPC server. Reads the API keys file and the TLS files here, at start-up: a file that is
 * missing or broken throws a ConfigError with one line naming the key.
 */
export function createGrpcTransport(options: GrpcTransportOptions): GrpcTransport {
  const { config, logger, metrics, health } = options;
  const credentials = serverCredentials(config.security.tls);
  const apiKeys = loadApiKeys(config.security);
  let draining = false;
  const activeCalls = new ActiveCalls();
  const server = new Server({
    'grpc.max_receive_message_length': config.service.max_message_bytes,
    'grpc.max_send_message_length': config.service.max_message_bytes,
    'grpc.keepalive_time_ms': config.service.keepalive.time_ms,
    'grpc.keepalive_timeout_ms': config.service.keepalive.timeout_ms,
    interceptors: [
      createObserveInterceptor({
        logger,
        metrics,
        isDraining: () => draining,
        alwaysServed: new Set([HEALTH_SERVICE]),
        maxConcurrentCalls: config.service.max_concurrent_requests,
      }),
      // After the observer, which sees metadata first: refusals here are logged and counted too.
      createSecurityInterceptor({ security: config.security, apiKeys, metrics }),
    ],
  });

  const adapterOptions = {
    logger,
    activeCalls,
    defaultUnaryTimeoutMs: config.service.timeout * 1000,
    maxStreamDurationMs: config.service.max_stream_duration_seconds * 1000,
  };
  for (const registration of options.services) {
    server.addService(
      grpcServiceDefinition(registration.service),
      adaptService(registration, adapterOptions),
    );
  }
  health.addToServer(server);
  addReflection(server);

  return {
    get activeCalls() {
      return activeCalls.size;
    },
    listen: () =>
      new Promise<number>((resolve, reject) => {
        const address = `${config.service.host.includes(':') ? `[${config.service.host}]` : config.service.host}:${config.service.port}`;
        server.bindAsync(address, credentials, (error, port) => {
          if (error) reject(new Error(`cannot listen on ${address}: ${error.message}`));
          else resolve(port);
        });
      }),
    async drain(graceMs) {
      if (draining) return;
      draining = true;
      health.markDraining();
      const deadline = Date.now() + graceMs;
      while (activeCalls.size > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      if (activeCalls.size > 0) {
        logger.warn(
          { calls: activeCalls.size, graceMs },
          'drain grace period over; cancelling calls in flight',
        );
        activeCalls.abortAll(
          new VoiceError(Reason.Draining, 'the server is shutting down; retry on another instance'),
        );
        const settleBy = Date.now() + 2000;
        while (activeCalls.size > 0 && Date.now() < settleBy)
          await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
