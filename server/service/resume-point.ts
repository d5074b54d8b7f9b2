import { invalidArgument } from '../errors.js';
import type { ResumePoint } from '../gen/cortex/voice/v1/transcription_pb.js';
import { type InputFormat, isOpusFormat } from '../pipeline/audio-format.js';

/** Where a stream starts on its timeline. */
export interface StreamOrigin {
  readonly offsetMs: number;
  readonly nextUtteranceIndex: number;
}

/** The largest resume offset: leaves the uint32 millisecond offsets of events 2^31 ms of headroom. */
export const MAX_RESUME_OFFSET_MS = 2 ** 31;

const START: StreamOrigin = Object.freeze({ offsetMs: 0, nextUtteranceIndex: 0 });

/** Checks TranscriptionConfig.resume against the stream's format; unset starts at 0. */
export function resolveResumePoint(resume: ResumePoint | undefined, format: InputFormat): StreamOrigin {
  if (resume === undefined) return START;
  if (format.encoding === 'wav') {
    throw invalidArgument(
      'config.resume',
      'requires raw PCM: a WAV stream cannot be continued mid-way (its header is not repeated); send the samples as AUDIO_ENCODING_LINEAR16 or AUDIO_ENCODING_FLOAT32 with sample_rate_hz and channels',
    );
  }
  if (isOpusFormat(format)) {
    throw invalidArgument(
      'config.resume',
      `requires raw PCM: an ${format.encoding === 'ogg-opus' ? 'Ogg' : 'WebM'} Opus stream cannot be continued mid-way (its headers are not repeated, and Opus packets depend on the ones before); send the samples as AUDIO_ENCODING_LINEAR16 or AUDIO_ENCODING_FLOAT32 with sample_rate_hz and channels`,
    );
  }
  const offset = resume.offsetMs;
  if (offset > BigInt(MAX_RESUME_OFFSET_MS)) {
    throw invalidArgument(
      'config.resume.offset_ms',
      `${offset} is out of range; allowed 0 to ${MAX_RESUME_OFFSET_MS}, an AudioCommitted.offset_ms`,
    );
  }
  const offsetMs = Number(offset);
  if ((offsetMs * format.sampleRate) % 1000 !== 0) {
    throw invalidArgument(
      'config.resume.offset_ms',
      `${offsetMs} is not a whole number of samples at ${format.sampleRate} Hz; allowed values x ${format.sampleRate} divisible by 1000, as every AudioCommitted.offset_ms is`,
    );
  }
  return { offsetMs, nextUtteranceIndex: resume.nextUtteranceIndex };
}
