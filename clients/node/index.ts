/**
 * The Cortex Voice SDK for Node: typed clients built on the service's generated protobuf code.
 * Streaming calls take and return async iterables; every call takes an AbortSignal and a timeout.
 */
export { Code, ConnectError } from '@connectrpc/connect';
export * from '../../server/gen/cortex/voice/v1/access_pb.js';
export * from '../../server/gen/cortex/voice/v1/audio_pb.js';
export * from '../../server/gen/cortex/voice/v1/synthesis_pb.js';
export * from '../../server/gen/cortex/voice/v1/transcription_pb.js';
export { HealthCheckResponse_ServingStatus as ServingStatus } from '../../server/gen/health/v1/health_pb.js';
export {
  errorInfoOf,
  errorReasonOf,
  Reason,
  retryDelayOf,
  VOICE_ERROR_DOMAIN,
  type VoiceErrorInfo,
} from '../common/errors.js';
export { createVoiceClient, type VoiceClient, type VoiceClientOptions } from './client.js';
export {
  type ResumableCallOptions,
  type ResumeOptions,
  type TranscribeOptions,
  transcribeResumable,
} from './resumable-transcribe.js';
