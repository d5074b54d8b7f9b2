import type { MessageInitShape } from '@bufbuild/protobuf';
import type {
  TranscribeResponse,
  TranscriptionConfigSchema,
} from '../../server/gen/cortex/voice/v1/transcription_pb.js';
import type { AppendChunk } from './append-sender.js';

export type TranscriptionConfigInit = MessageInitShape<typeof TranscriptionConfigSchema>;

/** What the session stream carries: first the session it opened, then the usual events. */
export type LiveSessionMessage =
  | { readonly kind: 'opened'; readonly sessionId: string; readonly maxChunkBytes?: number }
  | { readonly kind: 'event'; readonly event: TranscribeResponse };

/**
 * Live transcription for clients that cannot stream requests (browsers): a server-streaming RPC
 * opens a session and returns its events, a unary RPC appends numbered audio chunks to it. This
 * is the SDK's view of the two RPCs; `liveSessionApi` binds it to the generated client.
 */
export interface LiveSessionApi {
  /** The number of a session's first append. */
  readonly firstSequenceNumber: number;
  open(config: TranscriptionConfigInit, call: { signal: AbortSignal }): AsyncIterable<LiveSessionMessage>;
  append(
    sessionId: string,
    chunk: AppendChunk,
    call: { signal: AbortSignal; timeoutMs: number },
  ): Promise<void>;
}
