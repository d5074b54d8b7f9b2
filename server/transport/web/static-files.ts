import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A request and response of the web port. HTTP/2 requests (h2c, or h2 over TLS) come as
 * Http2ServerRequest/Response, whose compatibility API offers what is used here under the same names.
 */
export type NodeRequest = IncomingMessage;
export type NodeResponse = ServerResponse;

/** Where the browser build writes the demo page and the SDK bundle (scripts/build-web.mjs). */
export const DEFAULT_STATIC_ROOT = fileURLToPath(new URL('../../../web/', import.meta.url));

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.wav': 'audio/wav',
  '.wasm': 'application/wasm',
};

export interface StaticFiles {
  /** Answers a GET or HEAD of `/` or `/web/…` from the folder; returns false for any other request. */
  serve(request: NodeRequest, response: NodeResponse): boolean;
}

/**
 * The demo page at `/` (index.html) and the browser files at `/web/<file>`, from `root`
 * (dist/web/). A file that is not there is a 404 with a line saying so, the page itself included
 * when the browser build has not run; the server never fails for it. Paths cannot leave the folder.
 */
export function createStaticFiles(root: string = DEFAULT_STATIC_ROOT): StaticFiles {
  const base = resolve(root);
  return {
    serve(request, response) {
      if (request.method !== 'GET' && request.method !== 'HEAD') return false;
      const path = (request.url ?? '/').split('?', 1)[0] ?? '/';
      let file: string | undefined;
      if (path === '/' || path === '/index.html') file = join(base, 'index.html');
      else if (path.startsWith('/web/')) file = inside(base, path.slice('/web/'.length));
      else return false;
      if (file === undefined) {
        notFound(response, `${path} is not a file of the web build\n`);
        return true;
      }
      send(request, response, file, path);
      return true;
    },
  };
}

/** The file a URL path names inside the folder, or undefined when it would leave it. */
function inside(base: string, relative: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(relative);
  } catch {
    return undefined;
  }
  if (decoded === '' || decoded.includes('\0') || decoded.split(/[/\\]/).includes('..')) return undefined;
  const file = resolve(base, decoded);
  return file.startsWith(base + sep) ? file : undefined;
}

function send(request: NodeRequest, response: NodeResponse, file: string, path: string): void {
  stat(file).then(
    (stats) => {
      if (!stats.isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
      response.writeHead(200, {
        'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
        'content-length': String(stats.size),
        // The page and the bundle change with every build and are small: always revalidate.
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
      });
      if (request.method === 'HEAD') {
        response.end();
        return;
      }
      const stream = createReadStream(file);
      stream.on('error', () => response.destroy());
      stream.pipe(response);
    },
    () =>
      notFound(
        response,
        path === '/' || path === '/index.html'
          ? 'the demo page is not built: index.html is missing from the web build (dist/web/); run npm run build:web\n'
          : `${path} is not in the web build (dist/web/)\n`,
      ),
  );
}

function notFound(response: NodeResponse, text: string): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
  response.end(text);
}
