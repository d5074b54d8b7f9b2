import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  ResumePointSchema,
  type TranscribeResponse,
} from '../../server/gen/cortex/voice/v1/transcription_pb.js';
import { createHeldAudio } from '../common/held-audio.js';
import { createResumeEventFilter } from '../common/resume-events.js';
import { retryDelayMs } from '../common/retry-policy.js';
import { type AppendSender, createAppendSender, type RetryOptions } from './append-sender.js';
import { createEventQueue } from './event-queue.js';
import type { LiveSessionApi, TranscriptionConfigInit } from './live-session.js';

export interface SessionResumeOptions {
  /** Most audio held while the server has not committed it, in ms (default 120 000). */
  readonly maxHeldAudioMs?: number;
  /** Failed reopenings in a row before the transcription fails (default 8). */
  readonly attempts?: number;
  /** First pause before reopening, doubled after each failure (default 100 ms, at most 5 s). */
  readonly initialDelayMs?: number;
}

export interface ResumableSessionOptions {
  /** The session's settings; raw PCM (the SDK's LINEAR16). */
  readonly config: TranscriptionConfigInit;
  readonly format: { readonly frameBytes: number; readonly sampleRate: number };
  readonly signal: AbortSignal;
  readonly retry?: RetryOptions | undefined;
  readonly resume: SessionResumeOptions;
  readonly maxChunkBytes: number;
}

/**
 * A live session that outlives its server: the audio appended and not yet committed
 * (AudioCommitted) is kept, and when the session's stream fails with a retryable status (its
 * server drained or stopped, the connection dropped), or its appends find it gone, a new session
 * is opened from the last commit point (`config.resume`), the held audio is appended to it, and
 * the audio goes on there. Events already passed on are not repeated.
 */
export interface ResumableSession {
  /** Queues audio for the current session (and keeps it until committed). */
  push(audio: Uint8Array): void;
  /** Ends the audio: resolves once every final has arrived, through whichever session. */
  end(): Promise<void>;
  /** The first session's id. */
  readonly sessionId: Promise<string>;
  readonly events: AsyncIterable<TranscribeResponse>;
  /** Settles when the transcription is over. */
  readonly done: Promise<void>;
}

export function openResumableSession(
  api: LiveSessionApi,
  options: ResumableSessionOptions,
): ResumableSession {
  const events = createEventQueue<TranscribeResponse>();
  const initial = options.resume.initialDelayMs ?? 100;
  let resume = {
    offsetMs: Number(options.config.resume?.offsetMs ?? 0n),
    nextUtteranceIndex: options.config.resume?.nextUtteranceIndex ?? 0,
  };
  const held = createHeldAudio({
    ...options.format,
    originMs: resume.offsetMs,
    maxHeldMs: options.resume.maxHeldAudioMs ?? 120_000,
  });
  const filter = createResumeEventFilter();
  let current: AppendSender | undefined;
  let currentAttempt: AbortController | undefined;
  let ending = false;
  let fatal: unknown;
  let named!: (id: string) => void;
  let unnamed!: (error: unknown) => void;
  const sessionId = new Promise<string>((resolve, reject) => {
    named = resolve;
    unnamed = reject;
  });
  sessionId.catch(() => {});

  const attempt = async (): Promise<void> => {
    const controller = new AbortController();
    const signal = AbortSignal.any([options.signal, controller.signal]);
    let opened!: (id: string) => void;
    const id = new Promise<string>((resolve, reject) => {
      opened = resolve;
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    id.catch(() => {});
    let maxChunkBytes = options.maxChunkBytes;
    const sender = createAppendSender({
      append: async (chunk, call) => api.append(await id, chunk, call),
      signal,
      firstSequenceNumber: api.firstSequenceNumber,
      maxAppendBytes: () => maxChunkBytes,
      ...(options.retry === undefined ? {} : { retry: options.retry }),
    });
    let senderError: unknown;
    sender.done.catch((error: unknown) => {
      senderError ??= error;
      controller.abort(error);
    });
    for (let sequence = held.first; sequence < held.next; sequence += 1) {
      const chunk = held.at(sequence);
      if (chunk !== undefined) sender.push(chunk);
    }
    current = sender;
    currentAttempt = controller;
    if (ending) sender.end().catch(() => {});
    const config: TranscriptionConfigInit = {
      ...options.config,
      resumable: true,
      resume: create(ResumePointSchema, {
        offsetMs: BigInt(resume.offsetMs),
        nextUtteranceIndex: resume.nextUtteranceIndex,
      }),
    };
    try {
      for await (const message of api.open(config, { signal })) {
        if (message.kind === 'opened') {
          if (message.maxChunkBytes !== undefined)
            maxChunkBytes = Math.min(maxChunkBytes, message.maxChunkBytes);
          opened(message.sessionId);
          named(message.sessionId);
          continue;
        }
        const event = message.event.event;
        if (event.case === 'audioCommitted' && Number(event.value.offsetMs) >= resume.offsetMs) {
          resume = {
            offsetMs: Number(event.value.offsetMs),
            nextUtteranceIndex: event.value.nextUtteranceIndex,
          };
          held.commit(resume.offsetMs);
        }
        const passed = filter.pass(message.event);
        if (passed !== undefined) events.push(passed);
      }
    } catch (error) {
      throw senderError ?? error;
    } finally {
      current = undefined;
      currentAttempt = undefined;
      controller.abort();
    }
  };

  const run = async () => {
    let failures = 0;
    let delay = initial;
    for (;;) {
      try {
        await attempt();
        return;
      } catch (error) {
        if (fatal !== undefined) throw fatal;
        const failure = ConnectError.from(error);
        if (options.signal.aborted) throw failure;
        // Appends that find the session gone: its server went away with it.
        const pause = retryDelayMs(failure, delay) ?? (failure.code === Code.NotFound ? delay : undefined);
        failures += 1;
        if (pause === undefined || failures > (options.resume.attempts ?? 8)) throw failure;
        await sleep(pause, options.signal);
        delay = Math.min(delay * 2, 5000);
      }
    }
  };

  const done = run().then(
    () => events.end(),
    (error: unknown) => {
      const failure = ConnectError.from(error);
      events.fail(failure);
      unnamed(failure);
      throw failure;
    },
  );
  done.catch(() => {});

  return {
    push(audio) {
      if (ending || audio.length === 0 || fatal !== undefined) return;
      try {
        held.push(audio);
      } catch (error) {
        // Past the bound: the transcription fails with it.
        fatal = error;
        currentAttempt?.abort(error);
        return;
      }
      current?.push(audio);
    },
    end() {
      ending = true;
      current?.end().catch(() => {});
      return done;
    },
    sessionId,
    events,
    done,
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new ConnectError('the call was cancelled', Code.Canceled));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}
