import type { Client } from '@connectrpc/connect';
import type { Transcription } from '../../server/gen/cortex/voice/v1/transcription_pb.js';
import type { LiveSessionApi } from './live-session.js';

/**
 * The live-session RPCs of the generated Transcription client as the SDK uses them:
 * StartTranscriptionSession (server streaming; its first response carries `session_started`, the
 * later ones Transcribe's events) and AppendSessionAudio (unary, chunks numbered from 1).
 */
export function liveSessionApi(transcription: Client<typeof Transcription>): LiveSessionApi {
  return {
    firstSequenceNumber: 1,
    async *open(config, call) {
      for await (const response of transcription.startTranscriptionSession(
        { config },
        { signal: call.signal },
      )) {
        const started = response.sessionStarted;
        if (started !== undefined) {
          yield {
            kind: 'opened',
            sessionId: started.sessionId,
            ...(started.maxChunkBytes > 0 ? { maxChunkBytes: started.maxChunkBytes } : {}),
          };
        }
        // An event of a kind this SDK does not know yet is skipped.
        if (response.event.case !== undefined) yield { kind: 'event', event: response };
      }
    },
    async append(sessionId, chunk, call) {
      await transcription.appendSessionAudio(
        { sessionId, sequenceNumber: chunk.sequenceNumber, audio: chunk.audio, endOfAudio: chunk.endOfAudio },
        call,
      );
    },
  };
}
