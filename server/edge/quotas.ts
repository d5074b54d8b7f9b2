import type { Config } from '../config.js';
import { Reason, VoiceError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import type { KeyLimits } from './keys-file.js';
import { createRateLimiter, createStreamCounter } from './rate-limiter.js';

/** When a client refused for having too many streams open may try again. */
export const STREAM_LIMIT_RETRY_MS = 1000;
/** A new audio call needs at least this much of its caller's audio budget left. */
const AUDIO_NEEDED_SECONDS = 1;
/** The `key` label of callers without a key (limited by their address, not labelled by it). */
export const ANONYMOUS_KEY_LABEL = 'anonymous';

/** Whose limits a call counts against. */
export interface QuotaSubject {
  /** The bucket: a key's caller id, or "address:<client>". */
  readonly identity: string;
  /** The key's name, for messages, logs and metrics; undefined for a caller without a key. */
  readonly keyName: string | undefined;
  /** The caller in words, for messages: 'the API key "web"', 'the client address 10.0.0.7'. */
  readonly who: string;
  /** The key's own limits, from the keys file. */
  readonly limits: KeyLimits;
}

export interface CallShape {
  /** Streams count against max_concurrent_streams. */
  readonly streaming: boolean;
  /** Counted against max_requests_per_minute (every call start; not a session's chunks). */
  readonly metered: boolean;
  /** Sends audio for transcription: refused while the caller's audio budget is spent. */
  readonly audio: boolean;
}

export interface Granted {
  /** Counts the call's stream out; once. */
  readonly release: () => void;
  /** Charges seconds of audio received to the caller's budget; never stops the call. */
  readonly chargeAudio: (seconds: number) => void;
}

export interface QuotaRefusal {
  readonly refusal: VoiceError;
  readonly metric: 'rate_limited' | 'stream_limit' | 'audio_limit';
}

export interface Quotas {
  admit(subject: QuotaSubject, call: CallShape): Granted | QuotaRefusal;
}

type LimitName = keyof Required<KeyLimits>;
type KeyMetrics = Pick<Metrics, 'keyRefusals' | 'keyActiveStreams' | 'keyAudioSeconds'>;

/**
 * The limits of each caller: streams open at once, call starts a minute (a token bucket), and
 * seconds of audio received a minute (a bucket that running streams may overdraw: a stream is
 * never cut for it, but the key's new audio calls wait until the budget has refilled). A key's own
 * limits from the keys file win over security.rate_limit; a client token counts against its key.
 */
export function createQuotas(rateLimit: Config['security']['rate_limit'], metrics?: KeyMetrics): Quotas {
  const rate = createRateLimiter();
  const audio = createRateLimiter();
  const streams = createStreamCounter();
  const none: Granted = { release: () => {}, chargeAudio: () => {} };

  const limitOf = (subject: QuotaSubject, name: LimitName) => {
    const own = subject.limits[name];
    return own !== undefined && subject.keyName !== undefined
      ? { value: own, configKey: `security.api_keys_file[${subject.keyName}].${name}` }
      : // An unset default (max_concurrent_streams) is no limit: the server's own caps apply.
        { value: rateLimit[name] ?? Number.POSITIVE_INFINITY, configKey: `security.rate_limit.${name}` };
  };

  return {
    admit(subject, call) {
      if (!rateLimit.enabled) return none;
      const label = { key: subject.keyName ?? ANONYMOUS_KEY_LABEL };
      const refuse = (
        name: LimitName,
        metric: QuotaRefusal['metric'],
        limit: ReturnType<typeof limitOf>,
        message: string,
        retryAfterMs: number,
      ): QuotaRefusal => {
        metrics?.keyRefusals.inc({ ...label, limit: name });
        const info: Record<string, string> = { limit: limit.configKey, limit_value: String(limit.value) };
        if (subject.keyName !== undefined) info.key_name = subject.keyName;
        return {
          refusal: new VoiceError(Reason.RateLimited, `${subject.who} ${message}`, { retryAfterMs, info }),
          metric,
        };
      };

      let release = () => {};
      if (call.streaming) {
        const limit = limitOf(subject, 'max_concurrent_streams');
        const acquired = streams.acquire(subject.identity, limit.value);
        if (acquired === undefined) {
          return refuse(
            'max_concurrent_streams',
            'stream_limit',
            limit,
            `already has ${limit.value} streams open (${limit.configKey}); retry when one ends`,
            STREAM_LIMIT_RETRY_MS,
          );
        }
        metrics?.keyActiveStreams.inc(label);
        let released = false;
        release = () => {
          if (released) return;
          released = true;
          acquired();
          metrics?.keyActiveStreams.dec(label);
        };
      }
      const budget = limitOf(subject, 'max_audio_seconds_per_minute');
      if (call.audio) {
        const left = audio.check(subject.identity, budget.value, AUDIO_NEEDED_SECONDS);
        if (!left.allowed) {
          release();
          return refuse(
            'max_audio_seconds_per_minute',
            'audio_limit',
            budget,
            `has used its ${budget.value} seconds of audio a minute (${budget.configKey}); streams in progress go on, a new one may start in ${Math.ceil(left.retryAfterMs / 1000)} s`,
            left.retryAfterMs,
          );
        }
      }
      if (call.metered) {
        const limit = limitOf(subject, 'max_requests_per_minute');
        const taken = rate.take(subject.identity, limit.value);
        if (!taken.allowed) {
          release();
          return refuse(
            'max_requests_per_minute',
            'rate_limited',
            limit,
            `has used its ${limit.value} calls a minute (${limit.configKey}); retry in ${Math.ceil(taken.retryAfterMs / 1000)} s`,
            taken.retryAfterMs,
          );
        }
      }
      return {
        release,
        chargeAudio(seconds) {
          if (!(seconds > 0)) return;
          audio.charge(subject.identity, budget.value, seconds);
          metrics?.keyAudioSeconds.inc(label, seconds);
        },
      };
    },
  };
}
