import type { IncomingMessage } from 'node:http';
import { createContextValues } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { Config } from '../../config.js';
import type { Edge } from '../../edge/edge.js';
import type { ServiceRegistration } from '../../service/context.js';
import type { HealthReporter } from '../health-reporter.js';
import type { TlsMaterial } from '../tls.js';
import { createCors } from './cors.js';
import { CONNECTION, type Connection, createRequestGate, webImplementation } from './handlers.js';
import { healthRegistration } from './health.js';
import { listenWeb, type RequestHandler, type WebListener } from './listener.js';
import { createStaticFiles, type NodeRequest, type NodeResponse } from './static-files.js';

export interface WebTransportOptions {
  readonly config: Config;
  /** The edge policy, shared with the gRPC port: one set of limits, one drain. */
  readonly edge: Edge;
  readonly health: HealthReporter;
  readonly services: readonly ServiceRegistration[];
  /** security.tls as read at start-up: with it, the web port serves HTTPS (HTTP/2 and HTTP/1.1). */
  readonly tls?: TlsMaterial | undefined;
  /** The folder of the demo page and browser bundle (dist/web/ by default). */
  readonly staticRoot?: string;
}

export interface WebTransport {
  /** Binds and starts serving; resolves with the bound port (useful with port 0). */
  listen(): Promise<number>;
  /**
   * Graceful drain, with the gRPC port (they share the edge): health turns NOT_SERVING, new calls
   * get UNAVAILABLE, calls in flight get `graceMs`, then `flushMs` to finish (Edge.drain), and are
   * then cancelled; then the port closes.
   */
  drain(graceMs: number, flushMs?: number): Promise<void>;
}

/** How long connections may take to close once the calls are over. */
const CLOSE_GRACE_MS = 1000;

/**
 * The web port: gRPC-Web and Connect (connect-node's adapter) for browsers and other HTTP/1.1
 * clients, serving the same transport-neutral handlers as the gRPC port, through the same edge;
 * grpc.health.v1.Health; CORS for service.cors_origins; and, with service.demo_page, the demo page
 * at `/` and the browser files at `/web/`. Native gRPC stays on the gRPC port.
 */
export function createWebTransport(options: WebTransportOptions): WebTransport {
  const { config, edge, health } = options;
  const cors = createCors(config.service.cors_origins);
  const statics = config.service.demo_page ? createStaticFiles(options.staticRoot) : undefined;
  const connections = new WeakMap<object, Connection>();
  const registrations = [...options.services, healthRegistration(health)];
  const adapter = connectNodeAdapter({
    grpc: false,
    grpcWeb: true,
    connect: true,
    readMaxBytes: config.service.max_message_bytes,
    writeMaxBytes: config.service.max_message_bytes,
    routes(router) {
      for (const registration of registrations) {
        router.service(registration.service, webImplementation(registration) as never);
      }
    },
    requestGate: createRequestGate(edge),
    contextValues: (request) => createContextValues().set(CONNECTION, connections.get(request)),
    fallback(request, response) {
      const [req, res] = [request as NodeRequest, response as unknown as NodeResponse];
      if (statics?.serve(req, res)) return;
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('not found\n');
    },
  });
  const handle: RequestHandler = (request: IncomingMessage, response) => {
    const connection: Connection = {
      remoteAddress: request.socket.remoteAddress,
      remotePort: request.socket.remotePort,
      call: undefined,
    };
    connections.set(request, connection);
    // However a response ends, the call it carried is over (a no-op once its status is recorded).
    response.once('close', () => connection.call?.clientGone());
    if (cors.handle(request, response)) return;
    adapter(request, response);
  };

  let listener: WebListener | undefined;
  let closed: Promise<void> | undefined;
  return {
    async listen() {
      listener = await listenWeb(handle, {
        host: config.service.host,
        port: config.service.web_port,
        tls: options.tls,
      }).catch((error: unknown) => {
        const why = error instanceof Error ? error.message : String(error);
        throw new Error(`cannot listen on ${config.service.host}:${config.service.web_port}: ${why}`);
      });
      return listener.port;
    },
    drain(graceMs, flushMs) {
      closed ??= (async () => {
        health.markDraining();
        await edge.drain(graceMs, flushMs);
        await listener?.close(CLOSE_GRACE_MS);
      })();
      return closed;
    },
  };
}
