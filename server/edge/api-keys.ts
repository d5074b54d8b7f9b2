import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Config, ConfigError } from '../config.js';

/** Request metadata carrying the caller's API key. */
export const API_KEY_HEADER = 'x-api-key';

export interface ApiKeys {
  /** True when at least one key is configured. */
  readonly configured: boolean;
  /**
   * The caller's identity if the key is one of the configured keys, else undefined. The identity is
   * a digest prefix, fit for rate-limit buckets and logs; the key itself is never kept or returned.
   */
  identify(candidate: string): string | undefined;
}

/**
 * Accepted keys, from security.api_keys (API_KEY) and security.api_keys_file (one key per line;
 * blank lines and lines starting with # are ignored). Read once at start-up.
 */
export function loadApiKeys(security: Config['security']): ApiKeys {
  const keys = [...security.api_keys];
  if (security.api_keys_file !== undefined) keys.push(...readKeysFile(security.api_keys_file));
  if (security.api_key_required && keys.length === 0) {
    throw new ConfigError(
      `config: security.api_key_required is true but security.api_keys_file = ${JSON.stringify(security.api_keys_file)} holds no key`,
    );
  }
  return createApiKeys(keys);
}

export function createApiKeys(keys: readonly string[]): ApiKeys {
  const digests = [...new Set(keys)].map(digest);
  return {
    configured: digests.length > 0,
    identify(candidate) {
      const given = digest(candidate);
      // Compare with every key, whatever the outcome, so the time taken says nothing about which
      // key nearly matched; hashing first gives timingSafeEqual inputs of equal length.
      let match: Buffer | undefined;
      for (const known of digests) if (timingSafeEqual(given, known)) match = known;
      return match === undefined ? undefined : `key:${match.toString('hex').slice(0, 16)}`;
    },
  };
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

function readKeysFile(file: string): string[] {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `config: security.api_keys_file = ${JSON.stringify(file)} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  return source
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'));
}
