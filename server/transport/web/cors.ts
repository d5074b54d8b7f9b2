import { cors as connectCors } from '@connectrpc/connect';
import { AUTHORIZATION_HEADER } from '../../edge/access-control.js';
import { API_KEY_HEADER } from '../../edge/api-keys.js';
import { REQUEST_ID_HEADER } from '../../edge/edge.js';
import { RETRY_PUSHBACK_KEY, STATUS_DETAILS_KEY } from '../../edge/wire-status.js';
import type { NodeRequest, NodeResponse } from './static-files.js';

/** Headers a page may send: connect-es's list for gRPC-Web and Connect, and the service's own. */
export const CORS_ALLOWED_HEADERS: readonly string[] = unique([
  ...connectCors.allowedHeaders,
  API_KEY_HEADER,
  AUTHORIZATION_HEADER,
  REQUEST_ID_HEADER,
]);

/**
 * Headers a page may read: connect-es's list, and the request id and the retry pushback (Connect
 * sends a unary call's error metadata as headers). The error details travel in
 * grpc-status-details-bin (gRPC-Web) or the body (Connect).
 */
export const CORS_EXPOSED_HEADERS: readonly string[] = unique([
  ...connectCors.exposedHeaders,
  STATUS_DETAILS_KEY,
  REQUEST_ID_HEADER,
  RETRY_PUSHBACK_KEY,
]);

/** How long a browser may cache a preflight's answer, in seconds. */
const PREFLIGHT_MAX_AGE_SECONDS = 7200;

export interface Cors {
  /**
   * Adds the CORS headers for the request's origin if it is listed, and answers a preflight.
   * Returns true when the request was a preflight and has been answered.
   */
  handle(request: NodeRequest, response: NodeResponse): boolean;
}

/**
 * CORS for the origins of service.cors_origins (CORS_ORIGINS): exact origins such as
 * "https://app.example", or "*" for any. A listed origin gets Access-Control-Allow-Origin naming
 * it and the exposed headers; an origin not listed gets no CORS header at all (and its preflight a
 * 403), so the browser keeps the page from reading anything.
 */
export function createCors(origins: readonly string[]): Cors {
  const listed = new Set(origins.map((origin) => origin.replace(/\/+$/, '').toLowerCase()));
  const anyOrigin = listed.has('*');
  const allowed = (origin: string) => anyOrigin || listed.has(origin.toLowerCase());
  return {
    handle(request, response) {
      const origin = header(request, 'origin');
      const preflight =
        request.method === 'OPTIONS' && header(request, 'access-control-request-method') !== undefined;
      if (origin === undefined) return false;
      response.setHeader('vary', 'Origin');
      if (!allowed(origin)) {
        if (!preflight) return false;
        response.writeHead(403, { 'content-type': 'text/plain; charset=utf-8' });
        response.end(`origin ${origin} is not in service.cors_origins\n`);
        return true;
      }
      response.setHeader('access-control-allow-origin', origin);
      if (!preflight) {
        response.setHeader('access-control-expose-headers', CORS_EXPOSED_HEADERS.join(', '));
        return false;
      }
      response.writeHead(204, {
        'access-control-allow-methods': connectCors.allowedMethods.join(', '),
        'access-control-allow-headers': CORS_ALLOWED_HEADERS.join(', '),
        'access-control-max-age': String(PREFLIGHT_MAX_AGE_SECONDS),
      });
      response.end();
      return true;
    },
  };
}

function header(request: NodeRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function unique(names: readonly string[]): string[] {
  return [...new Set(names.map((name) => name.toLowerCase()))];
}
