import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface HubMirror {
  /** `http://127.0.0.1:<port>`, for models.hub_url. */
  readonly url: string;
  /** Every path asked for, in order. */
  readonly requested: readonly string[];
  /** Answers wait for this promise (by default they go out at once). */
  holdAnswersUntil(gate: Promise<void>): void;
  close(): Promise<void>;
}

/**
 * A stand-in for the model hub on loopback, serving the model folders under `root` in the hub's URL
 * layout (`/<org>/<name>/resolve/main/<file>`, 404 for anything else).
 */
export async function startHubMirror(root: string): Promise<HubMirror> {
  const requested: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  const server = createServer((request, response) => {
    requested.push(request.url ?? '');
    void gate.then(() => {
      const match = /^\/(.+?)\/resolve\/main\/(.+)$/.exec(request.url ?? '');
      const path = match ? join(root, match[1]!, match[2]!) : '';
      if (!match || !existsSync(path)) {
        response.writeHead(404).end('not found');
        return;
      }
      const body = readFileSync(path);
      response.writeHead(200, { 'content-length': body.length }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requested,
    holdAnswersUntil(next) {
      gate = next;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
