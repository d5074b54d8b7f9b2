import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/**
 * The service's configuration: one schema, read from an optional YAML file and environment overrides,
 * validated once at start-up and frozen. This module is the only reader of process.env.
 * Section and key names follow the deployment guide of the service this one replaces.
 */

const intIn = (min: number, max: number) =>
  z
    .number({ error: `an integer from ${min} to ${max}` })
    .int({ error: `an integer from ${min} to ${max}` })
    .min(min, { error: `an integer from ${min} to ${max}` })
    .max(max, { error: `an integer from ${min} to ${max}` });

const numberIn = (min: number, max: number) =>
  z
    .number({ error: `a number from ${min} to ${max}` })
    .min(min, { error: `a number from ${min} to ${max}` })
    .max(max, { error: `a number from ${min} to ${max}` });

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `one of ${values.join(', ')}` });

const text = (what = 'a non-empty string') => z.string({ error: what }).min(1, { error: what });
const flag = z.boolean({ error: 'true or false' });
const textList = z.array(text(), { error: 'a list of non-empty strings' });

/** An IPv4 or IPv6 range ("10.0.0.0/8", "fd00::/8") or a single address. */
const isCidr = (value: string): boolean => {
  const [address = '', prefix, ...rest] = value.trim().split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
};
const cidrList = z.array(
  z.string({ error: 'a CIDR range such as 10.0.0.0/8 or fd00::/8' }).refine(isCidr, {
    error: 'a CIDR range such as 10.0.0.0/8 or fd00::/8',
  }),
  { error: 'a list of CIDR ranges such as 10.0.0.0/8 or fd00::/8' },
);
const methodList = z.array(
  z
    .string({ error: 'a service name or a method path' })
    .regex(/^(\/?[A-Za-z_][\w.]*\/[A-Za-z_]\w*|[A-Za-z_][\w.]*)$/, {
      error: 'a service name like grpc.health.v1.Health or a method path like /grpc.health.v1.Health/Check',
    }),
  { error: 'a list of service names or method paths' },
);

/** The limits a caller can be given, in security.rate_limit and per key in the keys file. */
export const KEY_LIMITS = {
  max_concurrent_streams: intIn(1, 100_000),
  max_requests_per_minute: intIn(1, 1_000_000),
  max_audio_seconds_per_minute: intIn(1, 100_000_000),
} as const;

const SECRET = 'a secret of at least 32 bytes (make one with: openssl rand -base64 32)';
const ORIGIN = 'an origin such as https://app.example (scheme, host, optional port; no path), or *';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
const DTYPES = ['fp32', 'fp16', 'q8', 'q4'] as const;
const KOKORO_VOICE = 'a Kokoro voice name such as af_heart or bm_george';

const serviceSchema = z
  .object({
    host: text('a host name or IP address').default('0.0.0.0'),
    port: intIn(0, 65535).default(8899),
    /** Deadline in seconds for unary calls whose client sets none (TIMEOUT). */
    timeout: intIn(1, 3600).default(30),
    /** Calls served at once; beyond it new calls get RESOURCE_EXHAUSTED. */
    max_concurrent_requests: intIn(1, 100_000).default(100),
    /**
     * The web port (gRPC-Web and Connect for browsers, the demo page) on or off (VOICE_WEB_ENABLED).
     * `false` is what the deployment guide calls "web_port 0": here 0 means an ephemeral port, as
     * for every other port.
     */
    web_enabled: flag.default(true),
    /** Port of gRPC-Web and Connect over HTTP/1.1 and h2c, or HTTPS with security.tls (VOICE_WEB_PORT). */
    web_port: intIn(0, 65535).default(8080),
    /** Serve the demo page at / and the browser SDK at /web/ on the web port. */
    demo_page: flag.default(true),
    /**
     * Browser origins allowed to call the web port (CORS_ORIGINS): exact origins such as
     * https://app.example, or "*" for any. An origin not listed gets no CORS headers.
     */
    cors_origins: z
      .array(z.string({ error: ORIGIN }).regex(/^(\*|https?:\/\/[^/\s?#]+)$/, { error: ORIGIN }), {
        error: `a list, each ${ORIGIN}`,
      })
      .default([]),
    /** Largest message accepted or sent, in bytes (the guide's 10 MB request limit). */
    max_message_bytes: intIn(64 * 1024, 64 * 1024 * 1024).default(10 * 1024 * 1024),
    /** Seconds in-flight calls get to finish after SIGTERM before they are told to stop taking input. */
    drain_grace_seconds: intIn(0, 3600).default(30),
    /**
     * Seconds after the grace for calls to flush: streams stop reading, deliver what they were given
     * (a pending final, the sentence being spoken) and end with UNAVAILABLE; then the rest are cancelled.
     */
    drain_flush_seconds: intIn(0, 600).default(10),
    /** Longest a streaming call may last, in seconds. */
    max_stream_duration_seconds: intIn(1, 24 * 3600).default(3600),
    /** Live transcription sessions (StartTranscriptionSession + AppendSessionAudio). */
    sessions: z
      .object({
        /** How long a chunk that arrived early waits for a missing one before the session fails. */
        gap_timeout_ms: intIn(100, 60_000).default(2000),
        /** How long a session may go without a new chunk before it ends. */
        idle_timeout_ms: intIn(1000, 3_600_000).default(30_000),
        /** Sessions one caller (API key, or the key behind a client token) may have open at once. */
        max_per_caller: intIn(1, 10_000).default(20),
      })
      .strict()
      .prefault({}),
    keepalive: z
      .object({
        /** Interval of server pings on idle connections. */
        time_ms: intIn(1000, 24 * 3600 * 1000).default(30_000),
        /** How long to wait for a ping's answer before closing the connection. */
        timeout_ms: intIn(1000, 600_000).default(10_000),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const modelsSchema = z
  .object({
    /** Folder of models in the Hugging Face layout: <cache_dir>/<org>/<name>/… */
    cache_dir: text('a folder path').default('./models'),
    /**
     * Fetch configured models that are missing from `hub_url` at start-up (with progress in the log),
     * then serve them. On by default so a fresh checkout ends up transcribing; an air-gapped
     * deployment sets it off and installs models with `voice models pull` or a baked image.
     */
    allow_downloads: flag.default(true),
    /** Where `voice models pull` downloads from (HF_ENDPOINT): the Hugging Face hub or a mirror. */
    hub_url: z
      .string({ error: 'an http(s) URL' })
      .regex(/^https?:\/\/[^\s]+$/, { error: 'an http(s) URL' })
      .default('https://huggingface.co'),
    vad: z
      .object({
        /** Silero v6 measured as accurate as v5 with better onsets and fewer false alarms in noise. */
        model: oneOf(['silero_v4', 'silero_v5', 'silero_v6']).default('silero_v6'),
        threshold: numberIn(0.1, 0.95).default(0.5),
        min_speech_ms: intIn(0, 5000).default(250),
        min_silence_ms: intIn(100, 5000).default(500),
        speech_pad_ms: intIn(0, 1000).default(200),
      })
      .strict()
      .prefault({}),
    stt: z
      .object({
        /**
         * The multilingual model (Hugging Face id of a Whisper ONNX export): streams in a language
         * other than English, and "auto", go to it.
         */
        model: text('a model id').default('onnx-community/whisper-base'),
        /**
         * The model English streams go to (a Moonshine or Whisper ONNX export); "" sends English to
         * `model` as well.
         */
        english_model: z
          .string({ error: 'a model id, or "" for none' })
          .default('onnx-community/moonshine-base-ONNX'),
        /** Model ids a stream may ask for; the two defaults are always allowed. */
        allowed_models: textList.default([]),
        dtype: oneOf(DTYPES).default('q8'),
        /** Where the recognition sessions run: cpu, or cuda where onnxruntime's CUDA provider is installed. */
        device: oneOf(['cpu', 'cuda']).default('cpu'),
        /**
         * Start recognising an utterance as soon as the silence after it has covered the padding,
         * instead of after the whole min_silence; dropped unsent if speech resumes.
         */
        speculative_finals: flag.default(true),
        /** ISO 639-1 code, or "auto" to detect per utterance. */
        language: text('an ISO 639-1 code or "auto"').default('auto'),
        /** Interval of interim results in milliseconds. */
        interim_interval_ms: intIn(250, 10_000).default(1000),
      })
      .strict()
      .prefault({}),
    /**
     * A model pool that fails to load (a worker dies while loading, or a service's model is missing
     * or corrupt) tries again after `initial_delay_ms`, doubling per failure up to `max_delay_ms`
     * (±25 % jitter), for as long as the server runs; its service turns SERVING once a load succeeds.
     */
    load_retry: z
      .object({
        initial_delay_ms: intIn(10, 3_600_000).default(1000),
        max_delay_ms: intIn(10, 3_600_000).default(60_000),
      })
      .strict()
      .refine((retry) => retry.max_delay_ms >= retry.initial_delay_ms, {
        error: 'an integer no less than models.load_retry.initial_delay_ms',
        path: ['max_delay_ms'],
      })
      .prefault({}),
    tts: z
      .object({
        /** Voice id used when a request names none. */
        voice: text('a voice id').default('espeak:en-us'),
        /** Default speaking rate. */
        speed: numberIn(0.5, 2.0).default(1.0),
        /** Neural voices to load (Hugging Face ids of VITS / MMS-TTS ONNX exports). */
        neural_models: textList.default([]),
        /**
         * Kokoro-82M (Apache-2.0 weights), voices `kokoro:<voice>` at 24 kHz with word timing from the
         * model's durations. Off by default: the fp32 graph is a ~330 MB download.
         */
        kokoro: z
          .object({
            enabled: flag.default(false),
            /** Hub id of the ONNX export; the timestamped one gives per-token durations. */
            model: text('a model id').default('onnx-community/Kokoro-82M-v1.0-ONNX-timestamped'),
            /** Which graph of the export: fp32 onnx/model.onnx, fp16, q8 model_quantized, q4. */
            dtype: oneOf(DTYPES).default('fp32'),
            /** Voices to pull and offer, by Kokoro's names (voices/<name>.bin of the export). */
            voices: z
              .array(
                z
                  .string({ error: KOKORO_VOICE })
                  .regex(/^[abefhijpz][fm]_[a-z0-9]+$/, { error: KOKORO_VOICE }),
                { error: `a list, each ${KOKORO_VOICE}` },
              )
              .min(1, { error: `a non-empty list, each ${KOKORO_VOICE}` })
              .default(['af_heart']),
          })
          .strict()
          .prefault({}),
        /** Longest text per request, in characters. */
        max_text_chars: intIn(1, 1_000_000).default(5000),
        /** Longest total text per Synthesize stream, in characters. */
        max_stream_text_chars: intIn(1, 10_000_000).default(100_000),
      })
      .strict()
      .superRefine((tts, context) => {
        if (!tts.voice.startsWith('kokoro:')) return;
        const name = tts.voice.slice('kokoro:'.length);
        if (!tts.kokoro.enabled || !tts.kokoro.voices.includes(name)) {
          context.addIssue({
            code: 'custom',
            path: ['voice'],
            message: `a voice of models.tts.kokoro (enabled: true, with "${name}" among its voices)`,
          });
        }
      })
      .prefault({}),
  })
  .strict();

const performanceSchema = z
  .object({
    /** Model worker threads (MAX_WORKERS). */
    workers: intIn(1, 64).default(2),
    /** onnxruntime intra-op threads per worker. */
    inference_threads: intIn(1, 64).default(1),
    /**
     * Accepted for the deployment guide's config; only 1. Batching Whisper's encoder across streams
     * was measured slower on CPU than separate calls (4 utterances as one batch: 5–12 % longer), and
     * the library's batched generate mishandles finished rows, so recognition is not batched.
     */
    batch_size: intIn(1, 1).default(1),
    /**
     * Admission by capacity: a new Transcribe stream is refused (RESOURCE_EXHAUSTED, with a retry
     * hint) when admitting it would push the expected delay of finals past this bound, estimated
     * from measured inference times. 0 turns the check off.
     */
    max_final_delay_ms: intIn(0, 60_000).default(500),
    /** Engine-backed calls (Transcribe, TranscribeFile, Synthesize, SynthesizeText) in progress at once. */
    max_concurrent_requests: intIn(1, 100_000).default(100),
    /** Engine jobs waiting for a worker; beyond it calls get RESOURCE_EXHAUSTED. */
    request_queue_size: intIn(0, 100_000).default(200),
    /** Accepted for the deployment guide's config: workers always keep their models loaded. */
    model_caching: z.literal(true, { error: 'true (workers always keep their models loaded)' }).default(true),
    /** Size of the synthesized-sentence cache, in megabytes (0 disables it). */
    tts_cache_mb: intIn(0, 16_384).default(64),
    /** Largest audio chunk accepted in one message, in bytes. */
    max_audio_chunk_bytes: intIn(1024, 64 * 1024 * 1024).default(1024 * 1024),
    /** Longest audio one Transcribe stream or clip may carry, in seconds. */
    max_audio_seconds: intIn(1, 24 * 3600).default(3600),
  })
  .strict();

const loggingSchema = z
  .object({
    level: oneOf(LOG_LEVELS).default('info'),
    /** json: one JSON object per line; pretty: human-readable, for development only. */
    format: oneOf(['json', 'pretty']).default('json'),
    /** "stdout", "stderr" or a file path. */
    output: text('"stdout", "stderr" or a file path').default('stdout'),
  })
  .strict();

const monitoringSchema = z
  .object({
    /** Serve Prometheus metrics (PROMETHEUS_ENABLED). */
    enabled: flag.default(true),
    host: text('a host name or IP address').default('0.0.0.0'),
    prometheus_port: intIn(0, 65535).default(9090),
    metrics_endpoint: z
      .string({ error: 'a path starting with /' })
      .regex(/^\/[\w\-./]*$/, { error: 'a path starting with /' })
      .default('/metrics'),
  })
  .strict();

const securitySchema = z
  .object({
    /** Require an API key in x-api-key metadata. */
    api_key_required: flag.default(false),
    /** Accepted API keys (API_KEY, comma-separated). Never logged. */
    api_keys: textList.default([]),
    /**
     * A file of API keys: one key per line, or, for a file ending .yaml/.yml, a list of named keys
     * with limits of their own (server/edge/keys-file.ts).
     */
    api_keys_file: text('a file path').optional(),
    /** Full method paths or service names exempt from keys, address checks and rate limits. */
    exempt_methods: methodList.default([
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
    ]),
    /**
     * Limits of each caller (an API key, the key behind a client token, or a client address), unless
     * the keys file gives a key its own. The defaults let one key use the whole server.
     */
    rate_limit: z
      .object({
        enabled: flag.default(true),
        /** Call starts a minute (a token bucket that holds a minute's worth). */
        max_requests_per_minute: KEY_LIMITS.max_requests_per_minute.default(3000),
        /**
         * Streaming calls open at once. Unset by default: one caller may hold every stream the server
         * serves, and the server's own caps (performance and service.max_concurrent_requests) refuse
         * the rest with their own reasons.
         */
        max_concurrent_streams: KEY_LIMITS.max_concurrent_streams.optional(),
        /** Seconds of audio received for transcription a minute; when spent, new audio calls wait. */
        max_audio_seconds_per_minute: KEY_LIMITS.max_audio_seconds_per_minute.default(12_000),
      })
      .strict()
      .prefault({}),
    /** CIDR ranges allowed to call; empty allows every address. */
    allowed_ips: cidrList.default([]),
    /** CIDR ranges of proxies whose x-forwarded-for header is trusted for the client address. */
    trusted_proxies: cidrList.default([]),
    client_tokens: z
      .object({
        /**
         * HMAC-SHA256 key signing client tokens (VOICE_TOKEN_SECRET), at least 32 bytes; never logged.
         * Without one, the server makes a random one at start-up: its tokens then work only on this
         * process, until it restarts. Servers behind one balancer need the same secret.
         */
        secret: z
          .string({ error: SECRET })
          .refine((value) => Buffer.byteLength(value, 'utf8') >= 32, { error: SECRET })
          .optional(),
        /** Lifetime of a client token whose request names none, in seconds. */
        ttl_seconds: intIn(30, 3600).default(300),
        /** The longest lifetime a CreateClientToken request may ask for, in seconds. */
        max_ttl_seconds: intIn(30, 24 * 3600).default(3600),
      })
      .strict()
      .prefault({}),
    tls: z
      .object({
        /** PEM certificate (chain) of the gRPC and web ports; with key_file, turns TLS on. */
        cert_file: text('a file path').optional(),
        key_file: text('a file path').optional(),
        /** PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS). */
        client_ca_file: text('a file path').optional(),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const configSchema = z
  .object({
    service: serviceSchema.prefault({}),
    models: modelsSchema.prefault({}),
    performance: performanceSchema.prefault({}),
    logging: loggingSchema.prefault({}),
    monitoring: monitoringSchema.prefault({}),
    security: securitySchema.prefault({}),
  })
  .strict();

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export type Config = DeepReadonly<z.output<typeof configSchema>>;

/** A configuration that cannot be used; its message is one line naming the key, the value and what is allowed. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

interface EnvOverride {
  readonly variable: string;
  readonly path: readonly string[];
  readonly parse: (raw: string) => unknown;
}

const asNumber = (raw: string): unknown => (/^-?\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : raw);
const asBoolean = (raw: string): unknown => {
  const value = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(value)) return true;
  if (['false', '0', 'no', 'off'].includes(value)) return false;
  return raw;
};
const asList = (raw: string): unknown =>
  raw
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
const asLogLevel = (raw: string): unknown => {
  const value = raw.trim().toLowerCase();
  return value === 'warning' ? 'warn' : value === 'critical' ? 'fatal' : value;
};

/** Environment variables of the deployment guide, and the service's own. */
export const ENV_OVERRIDES: readonly EnvOverride[] = [
  { variable: 'VOICE_HOST', path: ['service', 'host'], parse: (raw) => raw },
  { variable: 'VOICE_PORT', path: ['service', 'port'], parse: asNumber },
  { variable: 'TIMEOUT', path: ['service', 'timeout'], parse: asNumber },
  { variable: 'VOICE_WEB_ENABLED', path: ['service', 'web_enabled'], parse: asBoolean },
  { variable: 'VOICE_WEB_PORT', path: ['service', 'web_port'], parse: asNumber },
  { variable: 'CORS_ORIGINS', path: ['service', 'cors_origins'], parse: asList },
  { variable: 'VOICE_MODELS_DIR', path: ['models', 'cache_dir'], parse: (raw) => raw },
  { variable: 'HF_ENDPOINT', path: ['models', 'hub_url'], parse: (raw) => raw.trim() },
  { variable: 'MAX_WORKERS', path: ['performance', 'workers'], parse: asNumber },
  { variable: 'LOG_LEVEL', path: ['logging', 'level'], parse: asLogLevel },
  { variable: 'LOG_FORMAT', path: ['logging', 'format'], parse: (raw) => raw.trim().toLowerCase() },
  { variable: 'PROMETHEUS_ENABLED', path: ['monitoring', 'enabled'], parse: asBoolean },
  { variable: 'METRICS_PORT', path: ['monitoring', 'prometheus_port'], parse: asNumber },
  { variable: 'API_KEY', path: ['security', 'api_keys'], parse: asList },
  { variable: 'VOICE_TOKEN_SECRET', path: ['security', 'client_tokens', 'secret'], parse: (raw) => raw },
];

/** Values never shown: not in errors, not in the start-up log. */
const SECRET_PATHS = new Set(['security.api_keys', 'security.client_tokens.secret']);

export interface LoadConfigOptions {
  /** The config file; defaults to VOICE_CONFIG. No file means defaults plus environment. */
  readonly file?: string | undefined;
  readonly env?: Env;
}

/** Reads, merges, validates and freezes the configuration. Throws ConfigError with one clear line. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? env.VOICE_CONFIG;
  const fromFile = file === undefined || file === '' ? {} : readConfigFile(file);
  const sources = new Map<string, string>();
  const merged = structuredClone(fromFile) as Record<string, unknown>;
  for (const override of ENV_OVERRIDES) {
    const raw = env[override.variable];
    if (raw === undefined || raw === '') continue;
    setPath(merged, override.path, override.parse(raw));
    sources.set(override.path.join('.'), override.variable);
  }
  if (
    env.API_KEY !== undefined &&
    env.API_KEY !== '' &&
    readPath(fromFile, ['security', 'api_key_required']) === undefined
  ) {
    setPath(merged, ['security', 'api_key_required'], true);
  }
  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ConfigError(describeIssue(issue, merged, sources, file));
  }
  const config = result.data;
  if (
    config.security.api_key_required &&
    config.security.api_keys.length === 0 &&
    config.security.api_keys_file === undefined
  ) {
    throw new ConfigError(
      'config: security.api_key_required is true but no key is configured; set API_KEY, security.api_keys or security.api_keys_file',
    );
  }
  const tokens = config.security.client_tokens;
  if (tokens.ttl_seconds > tokens.max_ttl_seconds) {
    throw new ConfigError(
      `config: security.client_tokens.ttl_seconds = ${tokens.ttl_seconds} is longer than security.client_tokens.max_ttl_seconds = ${tokens.max_ttl_seconds}`,
    );
  }
  checkSecurityFiles(config.security);
  return deepFreeze(config);
}

/** TLS files come in pairs and every file named must be readable; the transport reads them at start-up. */
function checkSecurityFiles(security: z.output<typeof securitySchema>): void {
  const { cert_file: cert, key_file: key, client_ca_file: ca } = security.tls;
  if ((cert === undefined) !== (key === undefined)) {
    const [set, missing] = cert === undefined ? ['key_file', 'cert_file'] : ['cert_file', 'key_file'];
    throw new ConfigError(
      `config: security.tls.${set} is set without security.tls.${missing}; set both or neither`,
    );
  }
  if (ca !== undefined && cert === undefined) {
    throw new ConfigError(
      'config: security.tls.client_ca_file is set without security.tls.cert_file and key_file; mutual TLS needs TLS',
    );
  }
  const files: Array<[string, string | undefined]> = [
    ['security.api_keys_file', security.api_keys_file],
    ['security.tls.cert_file', cert],
    ['security.tls.key_file', key],
    ['security.tls.client_ca_file', ca],
  ];
  for (const [name, file] of files) {
    if (file === undefined) continue;
    try {
      accessSync(file, fsConstants.R_OK);
    } catch (error) {
      throw new ConfigError(
        `config: ${name} = ${JSON.stringify(file)} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      );
    }
  }
}

function readConfigFile(file: string): Record<string, unknown> {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `config: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(source);
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new ConfigError(`config: ${file} is not valid YAML: ${message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(
      `config: ${file} must hold a mapping of sections (service, models, performance, logging, monitoring, security)`,
    );
  }
  return parsed as Record<string, unknown>;
}

function describeIssue(
  issue: z.core.$ZodIssue,
  input: unknown,
  sources: Map<string, string>,
  file: string | undefined,
): string {
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const at = [...path, issue.keys[0] ?? ''].join('.');
    const allowed = allowedKeysAt(path);
    return `config: unknown key ${at}${file ? ` in ${file}` : ''}; allowed keys here: ${allowed.join(', ')}`;
  }
  const key = path.join('.');
  const value = readPath(input, path);
  // An item of a list set from the environment (API_KEY, CORS_ORIGINS) came from that variable too.
  const from = sources.get(key) ?? [...sources].find(([path]) => key.startsWith(`${path}.`))?.[1];
  const origin = from ? ` (from ${from})` : file ? ` (in ${file})` : '';
  const shown = [...SECRET_PATHS].some((secret) => key === secret || key.startsWith(`${secret}.`))
    ? '<redacted>'
    : JSON.stringify(value);
  return `config: ${key} = ${shown}${origin} is invalid; expected ${issue.message}`;
}

function allowedKeysAt(path: readonly string[]): string[] {
  let schema: z.ZodType = configSchema;
  for (const key of path) {
    const shape = objectShape(schema);
    const next = shape?.[key];
    if (!next) return [];
    schema = next;
  }
  return Object.keys(objectShape(schema) ?? {});
}

function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  let current: z.ZodType = schema;
  for (let depth = 0; depth < 5; depth += 1) {
    if (current instanceof z.ZodObject) return current.shape as Record<string, z.ZodType>;
    const inner = (current as unknown as { def?: { innerType?: z.ZodType } }).def?.innerType;
    if (!inner) return undefined;
    current = inner;
  }
  return undefined;
}

function readPath(value: unknown, path: readonly string[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let current = target;
  for (const key of path.slice(0, -1)) {
    const next = current[key];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) current[key] = {};
    current = current[key] as Record<string, unknown>;
  }
  current[path[path.length - 1]!] = value;
}

function deepFreeze<T>(value: T): DeepReadonly<T> {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value as DeepReadonly<T>;
}

/** The configuration with secrets replaced, for logging at start-up. */
export function redactedConfig(config: Config): unknown {
  const { secret } = config.security.client_tokens;
  return {
    ...config,
    security: {
      ...config.security,
      api_keys: config.security.api_keys.map(() => '<redacted>'),
      client_tokens: {
        ...config.security.client_tokens,
        ...(secret === undefined ? {} : { secret: '<redacted>' }),
      },
    },
  };
}
