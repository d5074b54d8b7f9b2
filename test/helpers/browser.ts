import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Request } from 'playwright-core';
import wavefile from 'wavefile';
import { RATE } from './speech.js';

/** Debian's Chromium (`apt-get install chromium`; .ci/run installs it). Never a downloaded browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests are skipped, or false when Chromium is there. */
export function chromiumMissing(): string | false {
  return existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (apt-get install chromium)`;
}

/**
 * Flags for a headless Chromium on a machine without a network: no background connections
 * (component updates, sync, field trials would each be refused by the closed network, many at a
 * time), no first-run UI, and audio that may start without a user gesture. Playwright adds
 * --headless and --no-sandbox (needed as root), and gives every launch a new temporary
 * --user-data-dir of its own, removed on close.
 */
const QUIET_FLAGS = [
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
  '--disable-features=Translate,MediaRouter,OptimizationHints',
  '--metrics-recording-only',
  '--autoplay-policy=no-user-gesture-required',
];

export interface LaunchOptions {
  /** A WAV file the fake microphone plays once (see writeFakeMicrophone). */
  readonly fakeMicrophone?: string;
}

/** Launches Debian's Chromium headless; a cold launch can take ~13 s, so it is given 30 s. */
export function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  const args = [...QUIET_FLAGS];
  if (options.fakeMicrophone !== undefined) {
    args.push(
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${options.fakeMicrophone}`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM, args, timeout: 30_000 });
}

/**
 * Writes `samples` (16 kHz mono) as a 16-bit WAV for Chromium's fake microphone, behind 0.5 s of
 * silence: the device starts playing the file when it opens, before the page's capture runs, so
 * the first 0.1–0.4 s is lost. The returned path ends in `%noloop`, so that the file plays once.
 */
export function writeFakeMicrophone(
  samples: Float32Array,
  leadSeconds = 0.5,
): { path: string; leadMs: number } {
  const dir = mkdtempSync(join(tmpdir(), 'voice-fake-mic-'));
  const file = join(dir, 'microphone.wav');
  const lead = Math.round(leadSeconds * RATE);
  const pcm = new Int16Array(lead + samples.length);
  samples.forEach((sample, index) => {
    pcm[lead + index] = Math.max(-32768, Math.min(32767, Math.round(sample * 32767)));
  });
  const wav = new wavefile.WaveFile();
  wav.fromScratch(1, RATE, '16', pcm);
  writeFileSync(file, wav.toBuffer());
  return { path: `${file}%noloop`, leadMs: leadSeconds * 1000 };
}

/** The browser build beside the compiled tests (dist/web/ for dist/test/), as the web port serves it. */
export const WEB_BUILD = fileURLToPath(new URL('../../web/', import.meta.url));

export interface PageServer {
  /** "http://127.0.0.1:port" */
  readonly origin: string;
  readonly port: number;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
};

/**
 * A static server on 127.0.0.1 for pages of another origin than the voice server's web port: an
 * empty page at `/` and the built SDK (dist/web) at `/web/*`. The same server reached as
 * http://localhost:port is a third origin.
 */
export async function startPageServer(): Promise<PageServer> {
  const webDir = WEB_BUILD;
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://page').pathname;
    if (path === '/') {
      response.writeHead(200, { 'content-type': TYPES['.html'] });
      response.end(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>test</title></head><body></body></html>',
      );
      return;
    }
    const relative = normalize(path.replace(/^\/web\//, '')).replace(/^(\.\.[/\\])+/, '');
    const file = join(webDir, relative);
    if (!path.startsWith('/web/') || !file.startsWith(webDir) || !existsSync(file)) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    response.end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The messages of a gRPC-Web request body (length-prefixed frames; flag 0 = message). */
export function grpcWebMessages(body: Uint8Array): Uint8Array[] {
  const messages: Uint8Array[] = [];
  let offset = 0;
  while (offset + 5 <= body.length) {
    const flags = body[offset]!;
    const length = new DataView(body.buffer, body.byteOffset + offset + 1, 4).getUint32(0, false);
    if ((flags & 0x80) === 0) messages.push(body.subarray(offset + 5, offset + 5 + length));
    offset += 5 + length;
  }
  return messages;
}

/** Records the bodies of the page's requests to a method, e.g. "/cortex.voice.v1.Transcription/…". */
export function recordRequests(context: BrowserContext, methodPath: string): { bodies: Uint8Array[] } {
  const bodies: Uint8Array[] = [];
  context.on('request', (request: Request) => {
    if (request.method() !== 'POST' || !new URL(request.url()).pathname.endsWith(methodPath)) return;
    const body = request.postDataBuffer();
    if (body !== null) bodies.push(new Uint8Array(body));
  });
  return { bodies };
}

/**
 * Where `source` starts within `received` — how much of the file the fake microphone had played
 * before the capture began — found as the lag, up to `maxLag` samples, that best correlates a
 * window of `received` starting at `at` with the source (normalised cross-correlation).
 */
export function alignment(
  received: Float32Array,
  source: Float32Array,
  options: { at: number; window: number; maxLag: number },
): { lag: number; correlation: number } {
  const { at, window, maxLag } = options;
  const a = received.subarray(at, at + window);
  let energyA = 0;
  for (const sample of a) energyA += sample * sample;
  let best = { lag: 0, correlation: -Infinity };
  for (let lag = 0; lag <= maxLag; lag += 1) {
    const b = source.subarray(at + lag, at + lag + a.length);
    if (b.length < a.length) break;
    let dot = 0;
    let energyB = 0;
    for (let index = 0; index < a.length; index += 1) {
      const value = b[index]!;
      dot += a[index]! * value;
      energyB += value * value;
    }
    const correlation = dot / Math.sqrt(energyA * energyB || 1);
    if (correlation > best.correlation) best = { lag, correlation };
  }
  return best;
}
