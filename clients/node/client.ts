import { type Client, createClient, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { Access } from '../../server/gen/cortex/voice/v1/access_pb.js';
import { Synthesis } from '../../server/gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from '../../server/gen/cortex/voice/v1/transcription_pb.js';
import { Health } from '../../server/gen/health/v1/health_pb.js';
import { transcribeWith } from './resumable-transcribe.js';

export interface VoiceClientOptions {
  /** "host:port" (plaintext) or a URL: "http://host:port", "https://host:port". */
  readonly address: string;
  /** Sent as x-api-key on every call. */
  readonly apiKey?: string;
  /** TLS material for https addresses: PEM-encoded CA, and client certificate and key for mTLS. */
  readonly tls?: {
    readonly ca?: string | Buffer;
    readonly cert?: string | Buffer;
    readonly key?: string | Buffer;
  };
  /** Largest message the client accepts, in bytes (default 16 MiB). */
  readonly maxMessageBytes?: number;
  /** Extra interceptors, e.g. for tracing. */
  readonly interceptors?: readonly Interceptor[];
}

/** Typed clients of every service the server offers, over one HTTP/2 connection. */
export interface VoiceClient {
  readonly transcription: Client<typeof Transcription>;
  readonly synthesis: Client<typeof Synthesis>;
  readonly health: Client<typeof Health>;
  /** Mints short-lived client tokens for browsers (needs the API key). */
  readonly access: Client<typeof Access>;
  /**
   * Transcription.Transcribe; with `{ resume: true }` (or resume options) a lost stream is resumed
   * on a new one from the server's last AudioCommitted point, without repeated events.
   */
  transcribe: ReturnType<typeof transcribeWith>;
  /** Closes the connection; calls in flight fail. */
  close(): void;
}

/** Creates a client for service-to-service use over native gRPC (HTTP/2). */
export function createVoiceClient(options: VoiceClientOptions): VoiceClient {
  const baseUrl = toBaseUrl(options.address);
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  if (options.apiKey !== undefined) {
    const apiKey = options.apiKey;
    interceptors.unshift((next) => (request) => {
      request.header.set('x-api-key', apiKey);
      return next(request);
    });
  }
  const nodeOptions = options.tls ? { ...options.tls } : {};
  const sessionManager = new Http2SessionManager(
    baseUrl,
    { pingIntervalMs: 30_000, pingTimeoutMs: 10_000 },
    nodeOptions,
  );
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    interceptors,
    readMaxBytes: options.maxMessageBytes ?? 16 * 1024 * 1024,
  });
  const transcription = createClient(Transcription, transport);
  return {
    transcription,
    transcribe: transcribeWith(transcription),
    synthesis: createClient(Synthesis, transport),
    health: createClient(Health, transport),
    access: createClient(Access, transport),
    close: () => sessionManager.abort(),
  };
}

function toBaseUrl(address: string): string {
  if (/^https?:\/\//.test(address)) return address.replace(/\/$/, '');
  return `http://${address}`;
}
