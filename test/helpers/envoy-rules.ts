import { isIP } from 'node:net';
import {
  type DescEnum,
  type DescExtension,
  type DescField,
  getOption,
  hasOption,
  type Message,
  type Registry,
  ScalarType,
  toJson,
} from '@bufbuild/protobuf';
import { FeatureSet_FieldPresence } from '@bufbuild/protobuf/wkt';
import {
  childPath,
  type Decoded,
  type DecodedMessage,
  type Problem,
  type ScalarValue,
  type Where,
} from './envoy-decode.js';

/**
 * The protoc-gen-validate rules Envoy's protos carry (`(validate.rules)`, `(validate.required)` on
 * oneofs), checked on a decoded tree the way Envoy's generated validators check a config after
 * parsing it: required messages and oneofs, string lengths and patterns (header names and values),
 * number and duration ranges, enum values that must be defined, list and map sizes, Any type lists.
 * proto3 scalars are checked even when unset (an empty `stat_prefix` breaks `min_len: 1`), which is
 * how Envoy's protos say "required" for them. Not checked: timestamp ranges, `unique` on messages,
 * email/URI formats beyond a light test.
 */

type Num = number | bigint;
interface NumberRules {
  const?: Num | string;
  lt?: Num | string;
  lte?: Num | string;
  gt?: Num | string;
  gte?: Num | string;
  in?: (Num | string)[];
  not_in?: (Num | string)[];
  ignore_empty?: boolean;
}
interface StringRules {
  const?: string;
  len?: string;
  min_len?: string;
  max_len?: string;
  len_bytes?: string;
  min_bytes?: string;
  max_bytes?: string;
  pattern?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  not_contains?: string;
  in?: string[];
  not_in?: string[];
  email?: boolean;
  hostname?: boolean;
  ip?: boolean;
  ipv4?: boolean;
  ipv6?: boolean;
  uri?: boolean;
  uri_ref?: boolean;
  address?: boolean;
  uuid?: boolean;
  well_known_regex?: 'UNKNOWN' | 'HTTP_HEADER_NAME' | 'HTTP_HEADER_VALUE';
  strict?: boolean;
  ignore_empty?: boolean;
}
interface FieldRules {
  message?: { skip?: boolean; required?: boolean };
  string?: StringRules;
  bytes?: { len?: string; min_len?: string; max_len?: string; ignore_empty?: boolean };
  bool?: { const?: boolean };
  enum?: { const?: number; defined_only?: boolean; in?: number[]; not_in?: number[] };
  repeated?: {
    min_items?: string;
    max_items?: string;
    unique?: boolean;
    items?: FieldRules;
    ignore_empty?: boolean;
  };
  map?: {
    min_pairs?: string;
    max_pairs?: string;
    keys?: FieldRules;
    values?: FieldRules;
    ignore_empty?: boolean;
  };
  any?: { required?: boolean; in?: string[]; not_in?: string[] };
  duration?: NumberRules & { required?: boolean };
  timestamp?: { required?: boolean };
  [numeric: string]: unknown;
}

const NUMERIC_RULES = [
  'float',
  'double',
  'int32',
  'int64',
  'uint32',
  'uint64',
  'sint32',
  'sint64',
  'fixed32',
  'fixed64',
  'sfixed32',
  'sfixed64',
] as const;
const HEADER_NAME = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: header values exclude control characters.
const HEADER_VALUE = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: the loose form only excludes NUL, CR and LF.
const HEADER_LOOSE = /^[^\u0000\u000A\u000D]*$/;
const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Checks every rule on `root` and the messages inside it (Any values unpacked). */
export function checkEnvoyRules(root: DecodedMessage, registry: Registry): Problem[] {
  return new RuleChecker(registry).check(root);
}

class RuleChecker {
  private readonly problems: Problem[] = [];
  private readonly rulesExtension: DescExtension;
  private readonly oneofRequired: DescExtension | undefined;
  private readonly messageDisabled: DescExtension | undefined;
  private readonly cache = new Map<DescField, FieldRules | undefined>();

  constructor(registry: Registry) {
    const rules = registry.getExtension('validate.rules');
    if (rules === undefined) throw new Error('validate.rules is not in the registry');
    this.rulesExtension = rules;
    this.oneofRequired = registry.getExtension('validate.required');
    this.messageDisabled = registry.getExtension('validate.disabled');
  }

  check(root: DecodedMessage): Problem[] {
    this.message(root);
    return this.problems;
  }

  private message(decoded: DecodedMessage): void {
    const { desc, at } = decoded;
    if (
      this.messageDisabled &&
      hasOption(desc, this.messageDisabled) &&
      getOption(desc, this.messageDisabled)
    ) {
      return;
    }
    const required = this.oneofRequired;
    for (const oneof of desc.oneofs) {
      if (required === undefined || !hasOption(oneof, required) || !getOption(oneof, required)) continue;
      const set = (name: string) => decoded.fields.has(name) || decoded.invalid.has(name);
      if (!oneof.fields.some((field) => set(field.name))) {
        const names = oneof.fields.map((field) => field.name).join(', ');
        this.problem(at, `one of ${names} is required (oneof ${oneof.name})`);
      }
    }
    for (const field of desc.fields) this.field(decoded, field);
  }

  private field(parent: DecodedMessage, field: DescField): void {
    // A value that did not decode has been reported already; it is not also "missing".
    if (parent.invalid.has(field.name)) return;
    const entry = parent.fields.get(field.name);
    const rules = this.rulesOf(field);
    const at: Where = entry?.at ?? { ...parent.at, path: childPath(parent.at.path, field.name) };
    const skip = rules?.message?.skip === true;
    if (entry === undefined) {
      // Unset: only requirements and the implicit (zero) value of proto3 scalars are checked.
      if (field.oneof !== undefined || rules === undefined) return;
      if (
        rules.message?.required ||
        rules.duration?.required ||
        rules.any?.required ||
        rules.timestamp?.required
      ) {
        this.problem(at, `${field.name} is required (${field.parent.typeName})`);
        return;
      }
      if (field.fieldKind === 'list' || field.fieldKind === 'map') {
        this.collection(rules, [], at, field);
        return;
      }
      if (field.presence !== FeatureSet_FieldPresence.IMPLICIT) return;
      if (field.fieldKind === 'scalar')
        this.values(rules, { kind: 'scalar', value: zero(field.scalar), at }, field);
      if (field.fieldKind === 'enum') this.values(rules, { kind: 'enum', value: 0, at }, field);
      return;
    }
    const value = entry.value;
    if (rules !== undefined) {
      if (value.kind === 'list') this.collection(rules, value.items, at, field);
      else if (value.kind === 'map') {
        this.collection(rules, value.entries, at, field);
        for (const { key, value: item } of value.entries) {
          if (rules.map?.keys)
            this.values(rules.map.keys, { kind: 'scalar', value: key, at: item.at }, field);
          if (rules.map?.values) this.values(rules.map.values, item, field);
        }
      } else this.values(rules, value, field);
    }
    if (!skip) this.descend(value);
  }

  /** Validates the messages inside a value. */
  private descend(value: Decoded): void {
    switch (value.kind) {
      case 'message':
        this.message(value);
        break;
      case 'any':
        if (value.message) this.message(value.message);
        if (value.unpacked) this.message(value.unpacked);
        break;
      case 'list':
        for (const item of value.items) this.descend(item);
        break;
      case 'map':
        for (const entry of value.entries) this.descend(entry.value);
        break;
    }
  }

  private collection(rules: FieldRules, items: readonly unknown[], at: Where, field: DescField): void {
    const list = rules.repeated;
    const map = rules.map;
    const bounds = list
      ? { min: list.min_items, max: list.max_items, ignore: list.ignore_empty, nouns: ['item', 'items'] }
      : map
        ? { min: map.min_pairs, max: map.max_pairs, ignore: map.ignore_empty, nouns: ['entry', 'entries'] }
        : undefined;
    if (bounds === undefined || (bounds.ignore && items.length === 0)) return;
    const count = (n: string) => `${n} ${bounds.nouns[n === '1' ? 0 : 1]}`;
    if (bounds.min !== undefined && items.length < Number(bounds.min)) {
      this.problem(at, `${field.name} needs at least ${count(bounds.min)}, has ${items.length}`);
    }
    if (bounds.max !== undefined && items.length > Number(bounds.max)) {
      this.problem(at, `${field.name} takes at most ${count(bounds.max)}, has ${items.length}`);
    }
    if (list?.unique) {
      const seen = new Set<unknown>();
      for (const item of items as Decoded[]) {
        const key = item.kind === 'scalar' || item.kind === 'enum' ? item.value : undefined;
        if (key === undefined) continue;
        if (seen.has(key))
          this.problem(item.at, `${field.name} must hold unique values; ${String(key)} repeats`);
        seen.add(key);
      }
    }
    if (list?.items) for (const item of items as Decoded[]) this.values(list.items, item, field);
  }

  /** The type-specific rules of one value (a singular field, a list item, a map key or value). */
  private values(rules: FieldRules, value: Decoded, field: DescField): void {
    const at = value.at;
    const name = field.name;
    if (value.kind === 'scalar') {
      const raw = value.value;
      if (typeof raw === 'string' && rules.string) this.string(rules.string, raw, at, name);
      if (typeof raw === 'string' && rules.bytes) {
        const length = Buffer.from(raw, 'base64').length;
        const bytes = rules.bytes;
        if (!(bytes.ignore_empty && length === 0)) {
          if (bytes.min_len !== undefined && length < Number(bytes.min_len))
            this.problem(at, `${name} must be at least ${bytes.min_len} bytes, is ${length}`);
          if (bytes.max_len !== undefined && length > Number(bytes.max_len))
            this.problem(at, `${name} must be at most ${bytes.max_len} bytes, is ${length}`);
        }
      }
      if (typeof raw === 'boolean' && rules.bool?.const !== undefined && raw !== rules.bool.const) {
        this.problem(at, `${name} must be ${rules.bool.const}`);
      }
      if (typeof raw === 'number' || typeof raw === 'bigint') {
        for (const kind of NUMERIC_RULES) {
          const numeric = rules[kind] as NumberRules | undefined;
          if (numeric) this.number(numeric, raw, at, name, String);
        }
      }
    } else if (value.kind === 'enum' && rules.enum) {
      const enumRules = rules.enum;
      const desc = enumOf(field);
      if (
        enumRules.defined_only &&
        desc &&
        !desc.values.some((candidate) => candidate.number === value.value)
      ) {
        this.problem(at, `${name}: ${value.value} is not a defined value of ${desc.typeName}`);
      }
      if (enumRules.const !== undefined && value.value !== enumRules.const)
        this.problem(at, `${name} must be ${enumName(desc, enumRules.const)}`);
      if (enumRules.in?.length && !enumRules.in.includes(value.value))
        this.problem(at, `${name} must be one of ${enumRules.in.map((n) => enumName(desc, n)).join(', ')}`);
      if (enumRules.not_in?.includes(value.value))
        this.problem(at, `${name} must not be ${enumName(desc, value.value)}`);
    } else if (value.kind === 'duration' && rules.duration) {
      this.number(rules.duration, value.nanos, at, name, formatDuration, parseDuration);
    } else if (value.kind === 'any' && rules.any) {
      if (rules.any.in?.length && !rules.any.in.includes(value.typeUrl))
        this.problem(at, `${name}: @type must be one of ${rules.any.in.join(', ')}`);
      if (rules.any.not_in?.includes(value.typeUrl))
        this.problem(at, `${name}: @type ${value.typeUrl} is not allowed`);
    }
  }

  private string(rules: StringRules, value: string, at: Where, name: string): void {
    if (rules.ignore_empty && value === '') return;
    const length = [...value].length;
    const bytes = Buffer.byteLength(value);
    const fail = (message: string) => this.problem(at, `${name} ${message}`);
    const shown = JSON.stringify(value);
    if (rules.const !== undefined && value !== rules.const) fail(`must be ${JSON.stringify(rules.const)}`);
    if (rules.len !== undefined && length !== Number(rules.len)) fail(`must be ${rules.len} characters long`);
    if (rules.min_len !== undefined && length < Number(rules.min_len)) {
      fail(
        value === ''
          ? `must not be empty (min_len ${rules.min_len})`
          : `must be at least ${rules.min_len} characters`,
      );
    }
    if (rules.max_len !== undefined && length > Number(rules.max_len))
      fail(`must be at most ${rules.max_len} characters`);
    if (rules.len_bytes !== undefined && bytes !== Number(rules.len_bytes))
      fail(`must be ${rules.len_bytes} bytes`);
    if (rules.min_bytes !== undefined && bytes < Number(rules.min_bytes)) {
      fail(
        value === ''
          ? `must not be empty (min_bytes ${rules.min_bytes})`
          : `must be at least ${rules.min_bytes} bytes`,
      );
    }
    if (rules.max_bytes !== undefined && bytes > Number(rules.max_bytes))
      fail(`must be at most ${rules.max_bytes} bytes`);
    if (rules.pattern !== undefined) {
      const pattern = compile(rules.pattern);
      if (pattern && !pattern.test(value)) fail(`${shown} does not match /${rules.pattern}/`);
    }
    if (rules.prefix !== undefined && !value.startsWith(rules.prefix))
      fail(`must start with ${rules.prefix}`);
    if (rules.suffix !== undefined && !value.endsWith(rules.suffix)) fail(`must end with ${rules.suffix}`);
    if (rules.contains !== undefined && !value.includes(rules.contains))
      fail(`must contain ${rules.contains}`);
    if (rules.not_contains !== undefined && value.includes(rules.not_contains))
      fail(`must not contain ${rules.not_contains}`);
    if (rules.in?.length && !rules.in.includes(value)) fail(`must be one of ${rules.in.join(', ')}`);
    if (rules.not_in?.includes(value)) fail(`must not be ${shown}`);
    if (rules.ip && isIP(value) === 0) fail(`${shown} is not an IP address`);
    if (rules.ipv4 && isIP(value) !== 4) fail(`${shown} is not an IPv4 address`);
    if (rules.ipv6 && isIP(value) !== 6) fail(`${shown} is not an IPv6 address`);
    if (rules.hostname && !HOSTNAME.test(value)) fail(`${shown} is not a host name`);
    if (rules.address && isIP(value) === 0 && !HOSTNAME.test(value))
      fail(`${shown} is not a host name or IP address`);
    if (rules.uuid && !UUID.test(value)) fail(`${shown} is not a UUID`);
    if (rules.uri && !URL.canParse(value)) fail(`${shown} is not an absolute URI`);
    if (rules.email && !/^[^@\s]+@[^@\s]+$/.test(value)) fail(`${shown} is not an e-mail address`);
    const strict = rules.strict !== false;
    if (rules.well_known_regex === 'HTTP_HEADER_NAME' && !(strict ? HEADER_NAME : HEADER_LOOSE).test(value)) {
      fail(`${shown} is not a valid HTTP header name`);
    }
    if (
      rules.well_known_regex === 'HTTP_HEADER_VALUE' &&
      !(strict ? HEADER_VALUE : HEADER_LOOSE).test(value)
    ) {
      fail(`${shown} is not a valid HTTP header value`);
    }
  }

  /** const / in / not_in and the lt(e)/gt(e) range, with protoc-gen-validate's reversed ranges. */
  private number(
    rules: NumberRules,
    value: Num,
    at: Where,
    name: string,
    show: (value: Num) => string,
    parse: (raw: Num | string) => Num = parseNumber,
  ): void {
    if (rules.ignore_empty && Number(value) === 0) return;
    const bound = (raw: Num | string | undefined) => (raw === undefined ? undefined : parse(raw));
    const fail = (message: string) => this.problem(at, `${name} ${message}, got ${show(value)}`);
    const constant = bound(rules.const);
    if (constant !== undefined && compare(value, constant) !== 0) fail(`must be ${show(constant)}`);
    if (rules.in?.length && !rules.in.some((raw) => compare(value, parse(raw)) === 0)) {
      fail(`must be one of ${rules.in.map((raw) => show(parse(raw))).join(', ')}`);
    }
    if (rules.not_in?.some((raw) => compare(value, parse(raw)) === 0)) fail('must not be this value');
    const [gt, gte, lt, lte] = [bound(rules.gt), bound(rules.gte), bound(rules.lt), bound(rules.lte)];
    const lower = gt ?? gte;
    const upper = lt ?? lte;
    const aboveLower =
      gt !== undefined ? compare(value, gt) > 0 : gte !== undefined ? compare(value, gte) >= 0 : true;
    const belowUpper =
      lt !== undefined ? compare(value, lt) < 0 : lte !== undefined ? compare(value, lte) <= 0 : true;
    const describeLower = gt !== undefined ? `> ${show(gt)}` : gte !== undefined ? `>= ${show(gte)}` : '';
    const describeUpper = lt !== undefined ? `< ${show(lt)}` : lte !== undefined ? `<= ${show(lte)}` : '';
    if (lower !== undefined && upper !== undefined && compare(upper, lower) < 0) {
      // An upper bound below the lower one means "outside the range".
      if (!aboveLower && !belowUpper) fail(`must be ${describeLower} or ${describeUpper}`);
    } else if (!aboveLower || !belowUpper) {
      fail(`must be ${[describeLower, describeUpper].filter(Boolean).join(' and ')}`);
    }
  }

  private rulesOf(field: DescField): FieldRules | undefined {
    if (this.cache.has(field)) return this.cache.get(field);
    let rules: FieldRules | undefined;
    const extension = this.rulesExtension;
    if (hasOption(field, extension) && extension.fieldKind === 'message') {
      const value = getOption(field, extension) as Message;
      rules = toJson(extension.message, value, { useProtoFieldName: true }) as unknown as FieldRules;
    }
    this.cache.set(field, rules);
    return rules;
  }

  private problem(at: Where, message: string): void {
    this.problems.push({ ...at, message });
  }
}

function zero(type: ScalarType): ScalarValue {
  switch (type) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return '';
    case ScalarType.BOOL:
      return false;
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return 0n;
    default:
      return 0;
  }
}

function enumOf(field: DescField): DescEnum | undefined {
  return field.enum ?? undefined;
}

function enumName(desc: DescEnum | undefined, number: number): string {
  return desc?.values.find((value) => value.number === number)?.name ?? String(number);
}

function parseNumber(raw: Num | string): Num {
  if (typeof raw !== 'string') return raw;
  return /^-?\d+$/.test(raw) ? BigInt(raw) : Number(raw);
}

function compare(a: Num, b: Num): number {
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    if (Number.isInteger(Number(a)) && Number.isInteger(Number(b))) {
      const [x, y] = [BigInt(a), BigInt(b)];
      return x < y ? -1 : x > y ? 1 : 0;
    }
  }
  return Number(a) - Number(b);
}

/** "1.5s" (protobuf JSON) → nanoseconds. */
function parseDuration(raw: Num | string): Num {
  if (typeof raw !== 'string') return raw;
  const match = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(raw);
  if (!match) throw new Error(`bad duration in a rule: ${raw}`);
  const nanos = BigInt(match[2]!) * 1_000_000_000n + BigInt((match[3] ?? '').padEnd(9, '0'));
  return match[1] ? -nanos : nanos;
}

function formatDuration(nanos: Num): string {
  const value = BigInt(nanos);
  const seconds = Number(value) / 1e9;
  return `${seconds}s`;
}

/** RE2 patterns are mostly JavaScript patterns; one JavaScript cannot read is skipped. */
function compile(pattern: string): RegExp | undefined {
  try {
    return new RegExp(pattern, 'u');
  } catch {
    return undefined;
  }
}
