import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import {
  createServer as createHttp2Server,
  createSecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from 'node:http2';
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { TlsMaterial } from '../tls.js';

export type RequestHandler = (request: IncomingMessage, response: ServerResponse) => void;

export interface WebListener {
  readonly port: number;
  /**
   * Stops accepting connections, closes idle ones at once and the others as their responses end;
   * what is still open after `graceMs` is destroyed.
   */
  close(graceMs: number): Promise<void>;
}

/** The client connection preface of HTTP/2 (RFC 9113 §3.4), which an h2c client sends first. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** A connection that says nothing for this long is not a client worth waiting for. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/**
 * Listens for HTTP on one port, each connection in the version it speaks: with TLS, HTTP/2 or
 * HTTP/1.1 as ALPN settles (and mutual TLS with a client CA); in plaintext, HTTP/1.1, or HTTP/2
 * with prior knowledge (h2c) when the connection opens with HTTP/2's preface. Browsers use
 * HTTP/1.1 on http:// (gRPC-Web and Connect work over it); h2c serves Node clients, which need
 * HTTP/2 for bidirectional streams.
 */
export async function listenWeb(
  handler: RequestHandler,
  options: { host: string; port: number; tls?: TlsMaterial | undefined },
): Promise<WebListener> {
  const sockets = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  /** HTTP/1.1 requests in progress per socket: a socket with none is idle. */
  const busy = new Map<Socket, number>();
  let closing = false;

  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      busy.delete(socket);
    });
  };
  const h1Handler: RequestHandler = (request, response) => {
    const socket = request.socket;
    if (request.httpVersionMajor === 1) {
      busy.set(socket, (busy.get(socket) ?? 0) + 1);
      if (closing) response.setHeader('connection', 'close');
      response.once('close', () => {
        const left = (busy.get(socket) ?? 1) - 1;
        busy.set(socket, left);
        if (closing && left === 0) socket.destroySoon();
      });
    }
    handler(request, response);
  };
  const h2Handler = handler as unknown as (
    request: Http2ServerRequest,
    response: Http2ServerResponse,
  ) => void;

  const watchSession = (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  };
  /** Sockets speaking HTTP/2, which their session closes gracefully. */
  const h2Sockets = new WeakSet<Socket>();

  let server: Server;
  if (options.tls !== undefined) {
    const { certPem, keyPem, clientCaPem } = options.tls;
    const secure = createSecureServer({
      allowHTTP1: true,
      cert: certPem,
      key: keyPem,
      ...(clientCaPem === undefined ? {} : { ca: clientCaPem, requestCert: true, rejectUnauthorized: true }),
    });
    // With allowHTTP1, HTTP/1.1 requests arrive on the same 'request' event as HTTP/2 ones.
    secure.on(
      'request',
      (request: Http2ServerRequest | IncomingMessage, response: Http2ServerResponse | ServerResponse) => {
        if ('stream' in request) h2Handler(request, response as Http2ServerResponse);
        else h1Handler(request, response as ServerResponse);
      },
    );
    secure.on('secureConnection', (socket: TLSSocket) => {
      track(socket);
      if (socket.alpnProtocol === 'h2') h2Sockets.add(socket);
    });
    secure.on('session', watchSession);
    server = secure;
  } else {
    const http1 = createHttpServer(h1Handler);
    const http2 = createHttp2Server(h2Handler);
    http2.on('session', watchSession);
    server = createNetServer((socket) => {
      track(socket);
      routeByPreface(socket, (h2) => {
        if (h2) h2Sockets.add(socket);
        (h2 ? http2 : http1).emit('connection', socket);
        // The HTTP/1.1 parser reads what was put back only once the socket flows again; the
        // HTTP/2 session reads it by itself, and must not be resumed under.
        if (!h2) socket.resume();
      });
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  return {
    port: (server.address() as AddressInfo).port,
    async close(graceMs) {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      for (const socket of sockets) {
        if (!h2Sockets.has(socket) && (busy.get(socket) ?? 0) === 0) socket.destroy();
      }
      const force = setTimeout(() => {
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      await closed;
      clearTimeout(force);
    },
  };
}

/**
 * Reads a connection's first bytes to tell h2c from HTTP/1.1, then hands the connection on with
 * those bytes put back.
 */
function routeByPreface(socket: Socket, route: (h2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const done = () => {
    socket.off('data', onData);
    socket.setTimeout(0);
  };
  const onData = (chunk: Buffer) => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const length = Math.min(seen.length, H2_PREFACE.length);
    const h2 = seen.subarray(0, length).equals(H2_PREFACE.subarray(0, length));
    if (h2 && length < H2_PREFACE.length) return;
    done();
    socket.pause();
    socket.unshift(seen);
    route(h2);
  };
  socket.on('data', onData);
  socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => {
    done();
    socket.destroy();
  });
}
