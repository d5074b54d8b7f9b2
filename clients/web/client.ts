import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { Synthesis } from '../../server/gen/cortex/voice/v1/synthesis_pb.js';
import { Transcription } from '../../server/gen/cortex/voice/v1/transcription_pb.js';
import { Health } from '../../server/gen/health/v1/health_pb.js';
import { liveSessionApi } from './session-rpc.js';
import { type SpeakOptions, type SpeakResult, speak } from './speaker.js';
import { createTokenProvider, type TokenSource } from './token.js';
import {
  type MicrophoneTranscription,
  type TranscribeMicrophoneOptions,
  transcribeMicrophone,
} from './transcribe-microphone.js';

export interface VoiceWebClientOptions {
  /** The server's web port, e.g. "https://voice.example.com"; the page's own origin by default. */
  readonly baseUrl?: string;
  /**
   * A client token, or a function that fetches a fresh one from the page's backend (see
   * TokenSource); sent as `authorization: Bearer …`. Leave it out for a server without API keys.
   */
  readonly token?: TokenSource;
  /** Fetch a fresh token this long before the current one expires (default 30 s). */
  readonly tokenRefreshMarginMs?: number;
  /** Extra interceptors, e.g. for tracing. */
  readonly interceptors?: readonly Interceptor[];
  /** Deadline of calls that set none, in ms. */
  readonly defaultTimeoutMs?: number;
  /** A fetch to use instead of the global one (e.g. one that sets `credentials`). */
  readonly fetch?: typeof globalThis.fetch;
}

/** Typed clients of the voice services over gRPC-Web, and the microphone and speaker helpers. */
export interface VoiceWebClient {
  readonly transcription: Client<typeof Transcription>;
  readonly synthesis: Client<typeof Synthesis>;
  /** grpc.health.v1.Health, where the server serves it on the web port. */
  readonly health: Client<typeof Health>;
  readonly transport: Transport;
  /**
   * Transcribes a microphone live through a session (browsers cannot stream requests): 16 kHz
   * LINEAR16 chunks of ~100 ms from an AudioWorklet, appended in order, retried safely.
   */
  transcribeMicrophone(stream: MediaStream, options?: TranscribeMicrophoneOptions): MicrophoneTranscription;
  /** Speaks `text` through Web Audio, gap-free, with a callback as each chunk starts playing. */
  speak(text: string, options?: SpeakOptions): Promise<SpeakResult>;
}

export function createVoiceWebClient(options: VoiceWebClientOptions = {}): VoiceWebClient {
  const baseUrl = (options.baseUrl ?? globalThis.location?.origin ?? '').replace(/\/+$/, '');
  if (baseUrl === '') throw new TypeError('createVoiceWebClient: baseUrl is required outside a page');
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  if (options.token !== undefined) {
    const tokens = createTokenProvider(
      options.token,
      options.tokenRefreshMarginMs === undefined ? {} : { refreshMarginMs: options.tokenRefreshMarginMs },
    );
    interceptors.unshift((next) => async (request) => {
      const token = await tokens.get();
      request.header.set('authorization', `Bearer ${token}`);
      try {
        return await next(request);
      } catch (error) {
        if (ConnectError.from(error).code === Code.Unauthenticated) tokens.invalidate(token);
        throw error;
      }
    });
  }
  const transport = createGrpcWebTransport({
    baseUrl,
    useBinaryFormat: true,
    interceptors,
    ...(options.defaultTimeoutMs === undefined ? {} : { defaultTimeoutMs: options.defaultTimeoutMs }),
    ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
  });
  const transcription = createClient(Transcription, transport);
  const synthesis = createClient(Synthesis, transport);
  const sessions = liveSessionApi(transcription);
  return {
    transcription,
    synthesis,
    health: createClient(Health, transport),
    transport,
    transcribeMicrophone: (stream, microphoneOptions) =>
      transcribeMicrophone(sessions, stream, microphoneOptions),
    speak: (text, speakOptions) => speak(synthesis, text, speakOptions),
  };
}
