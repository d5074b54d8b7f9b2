import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError, KEY_LIMITS } from '../config.js';

/** Limits a key may set for itself; what it leaves out comes from security.rate_limit. */
export interface KeyLimits {
  readonly max_concurrent_streams?: number | undefined;
  readonly max_requests_per_minute?: number | undefined;
  readonly max_audio_seconds_per_minute?: number | undefined;
}

/** One accepted key: its SHA-256, the name logs and metrics use, and its own limits. */
export interface KeyEntry {
  readonly name: string;
  readonly digest: Buffer;
  readonly limits: KeyLimits;
}

const NAME = 'a name of 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit';
const SHA256 = 'the SHA-256 of the key as 64 hex digits (make it with: printf %s "$KEY" | sha256sum)';
const KEY = 'the key as a string (quote it if YAML would read it as a number)';

const entrySchema = z
  .object({
    name: z.string({ error: NAME }).regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, { error: NAME }),
    key: z.string({ error: KEY }).min(1, { error: KEY }).optional(),
    key_sha256: z
      .string({ error: SHA256 })
      .regex(/^[0-9a-fA-F]{64}$/, { error: SHA256 })
      .optional(),
    max_concurrent_streams: KEY_LIMITS.max_concurrent_streams.optional(),
    max_requests_per_minute: KEY_LIMITS.max_requests_per_minute.optional(),
    max_audio_seconds_per_minute: KEY_LIMITS.max_audio_seconds_per_minute.optional(),
  })
  .strict();
const ENTRY_FIELDS = Object.keys(entrySchema.shape);

export function digestOf(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** The name of a key that has none: stable across restarts, and never the key itself. */
export function derivedName(digest: Buffer): string {
  return `unnamed-${digest.toString('hex').slice(0, 8)}`;
}

/**
 * The keys of security.api_keys_file. A file ending .yaml or .yml is a list of named keys
 * (`{name, key | key_sha256, max_concurrent_streams?, max_requests_per_minute?,
 * max_audio_seconds_per_minute?}`); any other file holds one key per line, blank lines and lines
 * starting with # ignored, each named after its digest. Throws ConfigError naming the file, the
 * entry and the field; a key is never quoted.
 */
export function readKeysFile(file: string): KeyEntry[] {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `config: security.api_keys_file = ${JSON.stringify(file)} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  return /\.ya?ml$/i.test(file) ? parseStructured(file, source) : parsePlain(source);
}

function parsePlain(source: string): KeyEntry[] {
  const lines = source
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'));
  // A key listed twice is the same key with the same (derived) name: kept once, as it always was.
  const byDigest = new Map<string, KeyEntry>();
  for (const line of lines) {
    const digest = digestOf(line);
    byDigest.set(digest.toString('hex'), { name: derivedName(digest), digest, limits: {} });
  }
  return [...byDigest.values()];
}

function parseStructured(file: string, source: string): KeyEntry[] {
  const at = `config: security.api_keys_file = ${JSON.stringify(file)}`;
  let parsed: unknown;
  try {
    parsed = parseYaml(source);
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new ConfigError(`${at} is not valid YAML: ${message}`);
  }
  if (parsed === null || parsed === undefined) return [];
  if (!Array.isArray(parsed)) {
    throw new ConfigError(
      `${at} must hold a list of keys, each {name, key or key_sha256, and optional ${ENTRY_FIELDS.slice(3).join(', ')}}`,
    );
  }
  const entries: KeyEntry[] = [];
  const names = new Map<string, number>();
  const digests = new Map<string, number>();
  for (const [index, raw] of parsed.entries()) {
    const number = index + 1;
    const label = entryLabel(number, raw);
    const result = entrySchema.safeParse(raw);
    if (!result.success) throw new ConfigError(`${at}: ${label}: ${describe(result.error.issues[0], raw)}`);
    const entry = result.data;
    if ((entry.key === undefined) === (entry.key_sha256 === undefined)) {
      throw new ConfigError(`${at}: ${label}: give exactly one of key and key_sha256`);
    }
    const digest = entry.key !== undefined ? digestOf(entry.key) : Buffer.from(entry.key_sha256 ?? '', 'hex');
    const hex = digest.toString('hex');
    const sameName = names.get(entry.name);
    if (sameName !== undefined) {
      throw new ConfigError(`${at}: entries ${sameName} and ${number} have the same name "${entry.name}"`);
    }
    const sameKey = digests.get(hex);
    if (sameKey !== undefined) {
      throw new ConfigError(`${at}: entries ${sameKey} and ${number} hold the same key`);
    }
    names.set(entry.name, number);
    digests.set(hex, number);
    const { name, key: _key, key_sha256: _sha, ...limits } = entry;
    entries.push({ name, digest, limits });
  }
  return entries;
}

function entryLabel(number: number, raw: unknown): string {
  const name = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>).name : undefined;
  return typeof name === 'string' && /^[\w.-]{1,64}$/.test(name)
    ? `entry ${number} (name "${name}")`
    : `entry ${number}`;
}

function describe(issue: z.core.$ZodIssue | undefined, raw: unknown): string {
  if (issue === undefined) return 'is invalid';
  if (issue.code === 'unrecognized_keys') {
    return `unknown field ${issue.keys[0] ?? ''}; allowed fields: ${ENTRY_FIELDS.join(', ')}`;
  }
  const field = issue.path.map(String).join('.');
  if (field === '') return `must be a mapping of ${ENTRY_FIELDS.join(', ')}`;
  const value = (raw as Record<string, unknown>)[field];
  // A key pasted into key_sha256 by mistake is still a key.
  const shown = field === 'key' || field === 'key_sha256' ? '<redacted>' : JSON.stringify(value);
  return value === undefined
    ? `${field} is missing; expected ${issue.message}`
    : `${field} = ${shown} is invalid; expected ${issue.message}`;
}
