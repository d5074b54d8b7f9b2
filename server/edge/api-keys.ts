import { timingSafeEqual } from 'node:crypto';
import { type Config, ConfigError } from '../config.js';
import { derivedName, digestOf, type KeyEntry, type KeyLimits, readKeysFile } from './keys-file.js';

/** Request metadata carrying the caller's API key. */
export const API_KEY_HEADER = 'x-api-key';

/** A configured key as the edge sees it: never the key, only its id, name and limits. */
export interface KeyAccount {
  /** The caller id: a digest prefix, stable per key; client tokens carry it as their subject. */
  readonly id: string;
  /** The name from the keys file, or one derived from the digest; what logs and metrics show. */
  readonly name: string;
  /** The key's own limits; what it leaves out comes from security.rate_limit. */
  readonly limits: KeyLimits;
}

export interface ApiKeys {
  /** True when at least one key is configured. */
  readonly configured: boolean;
  /**
   * The caller's id if the key is one of the configured keys, else undefined. The id is a digest
   * prefix, fit for quotas and session ownership; the key itself is never kept or returned.
   */
  identify(candidate: string): string | undefined;
  /** The key behind a caller id (of an API key, or the subject of a client token). */
  account(id: string): KeyAccount | undefined;
}

/**
 * Accepted keys, from security.api_keys (API_KEY) and security.api_keys_file (server/edge/keys-file.ts).
 * Read once at start-up. A key given both ways takes its name and limits from the file.
 */
export function loadApiKeys(security: Config['security']): ApiKeys {
  const entries = security.api_keys_file === undefined ? [] : readKeysFile(security.api_keys_file);
  if (security.api_key_required && security.api_keys.length === 0 && entries.length === 0) {
    throw new ConfigError(
      `config: security.api_key_required is true but security.api_keys_file = ${JSON.stringify(security.api_keys_file)} holds no key`,
    );
  }
  const fromFile = new Set(entries.map((entry) => entry.digest.toString('hex')));
  const inline = security.api_keys.filter((key) => !fromFile.has(digestOf(key).toString('hex')));
  const all = [...entries, ...inline.map(unnamed)];
  const names = new Set<string>();
  for (const { name } of all) {
    if (names.has(name)) {
      throw new ConfigError(
        `config: the key name "${name}" in security.api_keys_file is also the name derived for a key of security.api_keys (API_KEY); rename it`,
      );
    }
    names.add(name);
  }
  return createApiKeys(all);
}

/** Keys given as strings get a derived name and no limits of their own. */
export function createApiKeys(keys: readonly (string | KeyEntry)[]): ApiKeys {
  const byHex = new Map<string, { digest: Buffer; account: KeyAccount }>();
  for (const key of keys) {
    const entry = typeof key === 'string' ? unnamed(key) : key;
    const hex = entry.digest.toString('hex');
    if (byHex.has(hex)) continue;
    const account = Object.freeze({ id: `key:${hex.slice(0, 16)}`, name: entry.name, limits: entry.limits });
    byHex.set(hex, { digest: entry.digest, account });
  }
  const known = [...byHex.values()];
  const byId = new Map(known.map(({ account }) => [account.id, account]));
  return {
    configured: known.length > 0,
    identify(candidate) {
      const given = digestOf(candidate);
      // Compare with every key, whatever the outcome, so the time taken says nothing about which
      // key nearly matched; hashing first gives timingSafeEqual inputs of equal length.
      let match: KeyAccount | undefined;
      for (const { digest, account } of known) if (timingSafeEqual(given, digest)) match = account;
      return match?.id;
    },
    account: (id) => byId.get(id),
  };
}

function unnamed(key: string): KeyEntry {
  const digest = digestOf(key);
  return { name: derivedName(digest), digest, limits: {} };
}
