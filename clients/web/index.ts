/**
 * The Cortex Voice SDK for browsers (`@cortex/voice/web`): typed clients over gRPC-Web built on
 * the service's generated protobuf code, live microphone transcription through session RPCs, and
 * gap-free speech through Web Audio. Pages authenticate with short-lived client tokens, never with
 * an API key.
 */
export { Code, ConnectError } from '@connectrpc/connect';
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
export type { HeardText } from '../common/heard-text.js';
export type { RetryOptions } from './append-sender.js';
export { createVoiceWebClient, type VoiceWebClient, type VoiceWebClientOptions } from './client.js';
export type { LiveSessionApi, LiveSessionMessage, TranscriptionConfigInit } from './live-session.js';
export { MIC_PROCESSOR_NAME, micWorkletSource } from './mic-worklet.js';
export {
  type AudioCapture,
  CAPTURE_RATE,
  type CaptureOptions,
  type MicrophoneOptions,
  openMicrophone,
  startCapture,
} from './microphone.js';
export {
  type OpusCapture,
  type OpusCaptureOptions,
  opusRecordingFormat,
  startOpusCapture,
} from './opus-capture.js';
export {
  openResumableSession,
  type ResumableSession,
  type ResumableSessionOptions,
  type SessionResumeOptions,
} from './resumable-session.js';
export {
  type HeardSpeech,
  type SpeakOptions,
  type SpeakResult,
  type SpokenChunk,
  type SpokenViseme,
  type SpokenWord,
  sliceCodePoints,
} from './speaker.js';
export { type ClientToken, createTokenProvider, type TokenProvider, type TokenSource } from './token.js';
export type { MicrophoneTranscription, TranscribeMicrophoneOptions } from './transcribe-microphone.js';
