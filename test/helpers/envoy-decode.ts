import type { DescEnum, DescField, DescMessage, DescOneof, Registry } from '@bufbuild/protobuf';
import { ScalarType } from '@bufbuild/protobuf';
import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';

/**
 * Decodes an Envoy YAML file strictly as a protobuf message, the way Envoy reads it (YAML → JSON →
 * protobuf JSON, unknown fields rejected), but without stopping at the first error: every unknown
 * field, wrong type, bad enum value, unresolvable `@type` and clashing oneof member is reported
 * with its path and YAML line. `google.protobuf.Any` values are unpacked by their `@type`, and so is
 * a TypedStruct's `value`. The result is a typed tree that envoy-rules.ts checks further.
 */

export interface Where {
  /** e.g. `static_resources.clusters[0].load_assignment.endpoints[0]` ('' for the root). */
  readonly path: string;
  readonly line: number;
  readonly column: number;
}

export interface Problem extends Where {
  readonly message: string;
}

export interface DecodedMessage {
  readonly kind: 'message';
  readonly desc: DescMessage;
  readonly at: Where;
  /** By proto field name; only the fields the YAML sets (null counts as unset, as in protobuf JSON). */
  readonly fields: ReadonlyMap<string, DecodedEntry>;
  /** Fields set with a value that did not decode (already reported): not "missing" for the rules. */
  readonly invalid: ReadonlySet<string>;
}

export interface DecodedEntry {
  readonly field: DescField;
  readonly at: Where;
  readonly value: Decoded;
}

export type ScalarValue = string | number | bigint | boolean;

export type Decoded =
  /** Scalars, and the wrapper types (google.protobuf.UInt32Value…) by their inner value. */
  | { readonly kind: 'scalar'; readonly value: ScalarValue; readonly at: Where }
  | { readonly kind: 'enum'; readonly value: number; readonly at: Where }
  | { readonly kind: 'duration'; readonly nanos: bigint; readonly at: Where }
  | DecodedMessage
  | {
      readonly kind: 'any';
      readonly typeUrl: string;
      /** The packed message, when its type is known. */
      readonly message: DecodedMessage | undefined;
      /** For a TypedStruct, its `value` decoded as the message its `type_url` names. */
      readonly unpacked: DecodedMessage | undefined;
      readonly at: Where;
    }
  | { readonly kind: 'list'; readonly items: readonly Decoded[]; readonly at: Where }
  | {
      readonly kind: 'map';
      readonly entries: readonly { readonly key: ScalarValue; readonly value: Decoded }[];
      readonly at: Where;
    }
  /** Struct, Value, ListValue, Timestamp, FieldMask: checked for shape, carrying no rules. */
  | { readonly kind: 'json'; readonly at: Where };

export interface DecodeResult {
  readonly message: DecodedMessage;
  readonly problems: readonly Problem[];
  /** Deprecated fields and enum values: Envoy accepts them with a warning. */
  readonly warnings: readonly Problem[];
}

export const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';
const TYPE_URL_PREFIX = 'type.googleapis.com/';
const TYPED_STRUCTS = new Set(['xds.type.v3.TypedStruct', 'udpa.type.v1.TypedStruct']);
const WRAPPERS = new Set(
  ['Double', 'Float', 'Int64', 'UInt64', 'Int32', 'UInt32', 'Bool', 'String', 'Bytes'].map(
    (name) => `google.protobuf.${name}Value`,
  ),
);
/** Plain scalars yaml-cpp (Envoy's parser) reads as booleans, although YAML 1.2 reads them as strings. */
const YAML_CPP_BOOLEANS = /^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$/;
const INTEGER_RANGES = new Map<ScalarType, readonly [bigint, bigint]>([
  [ScalarType.INT32, [-(2n ** 31n), 2n ** 31n - 1n]],
  [ScalarType.SINT32, [-(2n ** 31n), 2n ** 31n - 1n]],
  [ScalarType.SFIXED32, [-(2n ** 31n), 2n ** 31n - 1n]],
  [ScalarType.UINT32, [0n, 2n ** 32n - 1n]],
  [ScalarType.FIXED32, [0n, 2n ** 32n - 1n]],
  [ScalarType.INT64, [-(2n ** 63n), 2n ** 63n - 1n]],
  [ScalarType.SINT64, [-(2n ** 63n), 2n ** 63n - 1n]],
  [ScalarType.SFIXED64, [-(2n ** 63n), 2n ** 63n - 1n]],
  [ScalarType.UINT64, [0n, 2n ** 64n - 1n]],
  [ScalarType.FIXED64, [0n, 2n ** 64n - 1n]],
]);
const LONG_TYPES = new Set([
  ScalarType.INT64,
  ScalarType.SINT64,
  ScalarType.SFIXED64,
  ScalarType.UINT64,
  ScalarType.FIXED64,
]);
/** Protobuf JSON's Duration: seconds with up to nine fractional digits, ±10 000 years. */
const DURATION = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;
const MAX_DURATION_SECONDS = 315_576_000_000n;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

type ValueType = { scalar: ScalarType } | { enum: DescEnum } | { message: DescMessage };

/** A path step: `.name` for fields, `[i]` for list items, `["key"]` for map entries. */
export function childPath(path: string, step: string | number): string {
  if (typeof step === 'number') return `${path}[${step}]`;
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(step)) return path === '' ? step : `${path}.${step}`;
  return `${path}[${JSON.stringify(step)}]`;
}

export function formatProblem(problem: Problem, file = 'envoy.yaml'): string {
  return `${file}:${problem.line}:${problem.column} ${problem.path || '(root)'}: ${problem.message}`;
}

/** Decodes YAML text as `typeName` (the bootstrap by default) with the registry's descriptors. */
export function decodeEnvoyYaml(source: string, registry: Registry, typeName = BOOTSTRAP): DecodeResult {
  const desc = registry.getMessage(typeName);
  if (desc === undefined) throw new Error(`${typeName} is not in the registry`);
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines, intAsBigInt: true, uniqueKeys: true });
  const decoder = new Decoder(registry, doc, lines);
  // Errors only: yaml warns about tags it does not know, such as Envoy's !ignore.
  for (const error of doc.errors) {
    const [start] = error.linePos ?? [{ line: 1, col: 1 }];
    decoder.problems.push({
      path: '',
      line: start.line,
      column: start.col,
      message: `YAML: ${error.message.split('\n')[0]}`,
    });
  }
  const message = decoder.message(desc, doc.contents as Node | null, { path: '', line: 1, column: 1 });
  return { message, problems: decoder.problems, warnings: decoder.warnings };
}

class Decoder {
  readonly problems: Problem[] = [];
  readonly warnings: Problem[] = [];
  private readonly fieldsByName = new Map<DescMessage, Map<string, DescField>>();

  constructor(
    private readonly registry: Registry,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  message(desc: DescMessage, raw: Node | null | undefined, at: Where, skipKeys?: ReadonlySet<string>) {
    const fields = new Map<string, DecodedEntry>();
    const invalid = new Set<string>();
    const decoded: DecodedMessage = { kind: 'message', desc, at, fields, invalid };
    const node = this.deref(raw);
    if (isNull(node)) return decoded;
    if (!isMap(node)) {
      this.problem(this.where(node, at), `expected a mapping for ${desc.typeName}, got ${describe(node)}`);
      return decoded;
    }
    const oneofs = new Map<DescOneof, string>();
    for (const pair of node.items) {
      const key = this.deref(pair.key as Node | null);
      if (!isScalar(key) || key.value === null || typeof key.value === 'object') {
        this.problem(this.where(key, at), `a field name must be a plain scalar, got ${describe(key)}`);
        continue;
      }
      const name = String(key.value);
      if (skipKeys?.has(name) || key.tag === '!ignore') continue;
      const keyAt = this.where(key, { ...at, path: childPath(at.path, name) });
      const field = this.lookup(desc, name);
      if (field === undefined) {
        const hint = closest(
          name,
          desc.fields.map((candidate) => candidate.name),
        );
        this.problem(
          keyAt,
          `unknown field "${name}" in ${desc.typeName}${hint ? ` (did you mean "${hint}"?)` : ''}`,
        );
        continue;
      }
      if (fields.has(field.name)) {
        this.problem(keyAt, `${field.name} is set twice (as "${field.name}" and "${field.jsonName}")`);
        continue;
      }
      const value = this.deref(pair.value as Node | null);
      if (isNull(value)) continue;
      if (field.oneof !== undefined) {
        const other = oneofs.get(field.oneof);
        if (other !== undefined) {
          this.problem(
            keyAt,
            `"${name}" and "${other}" are both set, but only one member of oneof ${field.oneof.name} may be`,
          );
          invalid.add(field.name);
          continue;
        }
        oneofs.set(field.oneof, name);
      }
      if (field.deprecated) this.warn(keyAt, `${desc.typeName}.${field.name} is deprecated`);
      const decodedValue = this.field(field, value, this.where(value, keyAt));
      if (decodedValue !== undefined) fields.set(field.name, { field, at: keyAt, value: decodedValue });
      else invalid.add(field.name);
    }
    return decoded;
  }

  private field(field: DescField, node: Node, at: Where): Decoded | undefined {
    const label = `${field.parent.typeName}.${field.name}`;
    switch (field.fieldKind) {
      case 'list': {
        if (!isSeq(node)) return this.wrong(at, label, 'a list', node);
        const type = listType(field);
        const items: Decoded[] = [];
        node.items.forEach((rawItem, index) => {
          const item = this.deref(rawItem as Node | null);
          const itemAt = this.where(item, { ...at, path: childPath(at.path, index) });
          if (isNull(item)) {
            this.problem(itemAt, `null is not allowed in the list ${label}`);
            return;
          }
          const decoded = this.value(type, item, itemAt, label);
          if (decoded !== undefined) items.push(decoded);
        });
        return { kind: 'list', items, at };
      }
      case 'map': {
        if (!isMap(node)) return this.wrong(at, label, 'a mapping', node);
        const type = mapType(field);
        const entries: { key: ScalarValue; value: Decoded }[] = [];
        for (const pair of node.items) {
          const keyNode = this.deref(pair.key as Node | null);
          const keyText = isScalar(keyNode) ? String(keyNode.value) : '';
          const entryAt = this.where(keyNode, { ...at, path: childPath(at.path, keyText) });
          if (!isScalar(keyNode) || keyNode.value === null) {
            this.problem(entryAt, `a key of the map ${label} must be a scalar, got ${describe(keyNode)}`);
            continue;
          }
          const key = this.mapKey(field.mapKey, keyNode.value, entryAt, label);
          const valueNode = this.deref(pair.value as Node | null);
          if (key === undefined) continue;
          if (isNull(valueNode)) {
            this.problem(entryAt, `the map ${label} has no value for "${keyText}"`);
            continue;
          }
          const value = this.value(type, valueNode, this.where(valueNode, entryAt), label);
          if (value !== undefined) entries.push({ key, value });
        }
        return { kind: 'map', entries, at };
      }
      case 'scalar':
        return this.value({ scalar: field.scalar }, node, at, label);
      case 'enum':
        return this.value({ enum: field.enum }, node, at, label);
      case 'message':
        return this.value({ message: field.message }, node, at, label);
    }
  }

  private value(type: ValueType, node: Node, at: Where, label: string): Decoded | undefined {
    if ('scalar' in type) {
      const value = this.scalar(type.scalar, node, at, label);
      return value === undefined ? undefined : { kind: 'scalar', value, at };
    }
    if ('enum' in type) return this.enumValue(type.enum, node, at, label);
    const desc = type.message;
    switch (desc.typeName) {
      case 'google.protobuf.Any':
        return this.any(node, at, label);
      case 'google.protobuf.Duration': {
        const nanos = this.duration(node, at, label);
        return nanos === undefined ? undefined : { kind: 'duration', nanos, at };
      }
      case 'google.protobuf.Timestamp':
        if (!isScalar(node) || typeof node.value !== 'string' || !TIMESTAMP.test(node.value)) {
          return this.wrong(at, label, 'an RFC 3339 timestamp string', node);
        }
        return { kind: 'json', at };
      case 'google.protobuf.FieldMask':
        if (!isScalar(node) || typeof node.value !== 'string') return this.wrong(at, label, 'a string', node);
        return { kind: 'json', at };
      case 'google.protobuf.Struct':
        if (!isMap(node)) return this.wrong(at, label, 'a mapping', node);
        return { kind: 'json', at };
      case 'google.protobuf.ListValue':
        if (!isSeq(node)) return this.wrong(at, label, 'a list', node);
        return { kind: 'json', at };
      case 'google.protobuf.Value':
        return { kind: 'json', at };
    }
    if (WRAPPERS.has(desc.typeName)) {
      const inner = desc.fields[0];
      if (inner?.fieldKind !== 'scalar') throw new Error(`${desc.typeName} is not a wrapper`);
      return this.value({ scalar: inner.scalar }, node, at, `${label} (${desc.typeName})`);
    }
    return this.message(desc, node, at);
  }

  private any(node: Node, at: Where, label: string): Decoded | undefined {
    if (!isMap(node)) return this.wrong(at, label, 'a mapping with "@type"', node);
    if (node.items.length === 0)
      return { kind: 'any', typeUrl: '', message: undefined, unpacked: undefined, at };
    const typePair = node.items.find((pair) => {
      const key = this.deref(pair.key as Node | null);
      return isScalar(key) && key.value === '@type';
    });
    const typeNode = this.deref(typePair?.value as Node | null | undefined);
    if (typePair === undefined || isNull(typeNode)) {
      this.problem(
        at,
        `${label} is a google.protobuf.Any without "@type" (e.g. "@type": ${TYPE_URL_PREFIX}<type>)`,
      );
      return undefined;
    }
    const typeAt = this.where(typeNode, { ...at, path: childPath(at.path, '@type') });
    if (!isScalar(typeNode) || typeof typeNode.value !== 'string') {
      return this.wrong(typeAt, label, 'a type URL string', typeNode);
    }
    const typeUrl = typeNode.value;
    if (!typeUrl.startsWith(TYPE_URL_PREFIX)) {
      this.problem(typeAt, `bad @type "${typeUrl}": a type URL is ${TYPE_URL_PREFIX}<full message name>`);
      return undefined;
    }
    const typeName = typeUrl.slice(TYPE_URL_PREFIX.length);
    const desc = this.registry.getMessage(typeName);
    if (desc === undefined) {
      const known = this.registry.getEnum(typeName) ? ' (that is an enum)' : '';
      this.problem(typeAt, `bad @type "${typeUrl}": Envoy's API has no message ${typeName}${known}`);
      return undefined;
    }
    if (usesValueKey(desc)) {
      // Well-known types with a JSON form of their own are packed as {"@type": …, "value": …}.
      for (const pair of node.items) {
        const key = this.deref(pair.key as Node | null);
        const name = isScalar(key) ? String(key.value) : '';
        if (name === '@type') continue;
        const keyAt = this.where(key, { ...at, path: childPath(at.path, name) });
        if (name !== 'value') {
          this.problem(keyAt, `unknown field "${name}" in an Any holding ${desc.typeName} (only "value")`);
          continue;
        }
        const value = this.deref(pair.value as Node | null);
        if (!isNull(value)) this.value({ message: desc }, value, this.where(value, keyAt), label);
      }
      return { kind: 'any', typeUrl, message: undefined, unpacked: undefined, at };
    }
    const message = this.message(desc, node, at, new Set(['@type']));
    const unpacked = TYPED_STRUCTS.has(desc.typeName) ? this.typedStruct(node, at) : undefined;
    return { kind: 'any', typeUrl, message, unpacked, at };
  }

  /** A TypedStruct's `value` (a Struct) decoded as the message its `type_url` names. */
  private typedStruct(node: Node, at: Where): DecodedMessage | undefined {
    if (!isMap(node)) return undefined;
    const get = (name: string) => {
      const pair = node.items.find((candidate) => {
        const key = this.deref(candidate.key as Node | null);
        return isScalar(key) && key.value === name;
      });
      return pair === undefined ? undefined : this.deref(pair.value as Node | null);
    };
    const typeUrl = get('type_url') ?? get('typeUrl');
    if (!isScalar(typeUrl) || typeof typeUrl.value !== 'string') return undefined;
    const typeName = typeUrl.value.slice(typeUrl.value.lastIndexOf('/') + 1);
    const desc = this.registry.getMessage(typeName);
    const valueAt = { ...at, path: childPath(at.path, 'value') };
    if (desc === undefined) {
      this.problem(this.where(typeUrl, valueAt), `TypedStruct names an unknown type "${typeUrl.value}"`);
      return undefined;
    }
    const value = get('value');
    return this.message(desc, value ?? null, this.where(value, valueAt));
  }

  private scalar(type: ScalarType, node: Node, at: Where, label: string): ScalarValue | undefined {
    const typeName = ScalarType[type].toLowerCase();
    if (!isScalar(node)) return this.wrong(at, `${label} (${typeName})`, expected(type), node);
    const value = node.value;
    switch (type) {
      case ScalarType.STRING:
        if (typeof value !== 'string') {
          return this.wrong(at, `${label} (string)`, 'a string', node, ' (quote it)');
        }
        if (node.type === 'PLAIN' && YAML_CPP_BOOLEANS.test(value)) {
          this.problem(at, `${label} (string): Envoy reads the plain scalar ${value} as a boolean; quote it`);
          return undefined;
        }
        return value;
      case ScalarType.BOOL:
        if (typeof value !== 'boolean') return this.wrong(at, `${label} (bool)`, 'true or false', node);
        return value;
      case ScalarType.BYTES:
        if (typeof value !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) {
          return this.wrong(at, `${label} (bytes)`, 'a base64 string', node);
        }
        return value;
      case ScalarType.FLOAT:
      case ScalarType.DOUBLE: {
        const number =
          typeof value === 'number' || typeof value === 'bigint'
            ? Number(value)
            : typeof value === 'string' && /^(NaN|-?Infinity|-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)$/.test(value)
              ? Number(value)
              : undefined;
        if (number === undefined) return this.wrong(at, `${label} (${typeName})`, 'a number', node);
        if (
          type === ScalarType.FLOAT &&
          Number.isFinite(number) &&
          Math.abs(number) > 3.4028234663852886e38
        ) {
          this.problem(at, `${label} (float): ${number} is out of range`);
          return undefined;
        }
        return number;
      }
      default: {
        const integer =
          typeof value === 'bigint'
            ? value
            : typeof value === 'number' && Number.isInteger(value)
              ? BigInt(value)
              : typeof value === 'string' && /^-?\d+$/.test(value)
                ? BigInt(value)
                : undefined;
        if (integer === undefined) return this.wrong(at, `${label} (${typeName})`, 'an integer', node);
        const [min, max] = INTEGER_RANGES.get(type)!;
        if (integer < min || integer > max) {
          this.problem(at, `${label} (${typeName}): ${integer} is out of range [${min}, ${max}]`);
          return undefined;
        }
        return LONG_TYPES.has(type) ? integer : Number(integer);
      }
    }
  }

  private enumValue(desc: DescEnum, node: Node, at: Where, label: string): Decoded | undefined {
    if (!isScalar(node)) return this.wrong(at, label, `a value of ${desc.typeName}`, node);
    const raw = node.value;
    if (typeof raw === 'bigint' || (typeof raw === 'number' && Number.isInteger(raw))) {
      const number = Number(raw);
      if (number < -(2 ** 31) || number >= 2 ** 31) {
        this.problem(at, `${label}: ${number} is out of range for enum ${desc.typeName}`);
        return undefined;
      }
      return { kind: 'enum', value: number, at };
    }
    const value =
      typeof raw === 'string' ? desc.values.find((candidate) => candidate.name === raw) : undefined;
    if (value === undefined) {
      const names = desc.values.map((candidate) => candidate.name);
      const list = names.length > 12 ? `${names.slice(0, 12).join(', ')}, …` : names.join(', ');
      this.problem(at, `${label}: ${describe(node)} is not a value of enum ${desc.typeName} (${list})`);
      return undefined;
    }
    if (value.deprecated) this.warn(at, `${desc.typeName}.${value.name} is deprecated`);
    return { kind: 'enum', value: value.number, at };
  }

  private duration(node: Node, at: Where, label: string): bigint | undefined {
    const match = isScalar(node) && typeof node.value === 'string' ? DURATION.exec(node.value) : null;
    if (match === null)
      return this.wrong(at, `${label} (Duration)`, 'a duration string such as "1.5s"', node);
    const seconds = BigInt(match[2]!);
    if (seconds > MAX_DURATION_SECONDS) {
      this.problem(at, `${label} (Duration): more than ${MAX_DURATION_SECONDS} seconds`);
      return undefined;
    }
    const nanos = seconds * 1_000_000_000n + BigInt((match[3] ?? '').padEnd(9, '0'));
    return match[1] ? -nanos : nanos;
  }

  private mapKey(type: ScalarType, value: unknown, at: Where, label: string): ScalarValue | undefined {
    const text = String(value);
    if (type === ScalarType.STRING) return text;
    if (type === ScalarType.BOOL) {
      if (text === 'true' || text === 'false') return text === 'true';
    } else if (/^-?\d+$/.test(text)) {
      const [min, max] = INTEGER_RANGES.get(type)!;
      const integer = BigInt(text);
      if (integer >= min && integer <= max) return LONG_TYPES.has(type) ? integer : Number(integer);
    }
    this.problem(at, `the key "${text}" of the map ${label} is not a ${ScalarType[type].toLowerCase()}`);
    return undefined;
  }

  private lookup(desc: DescMessage, name: string): DescField | undefined {
    let byName = this.fieldsByName.get(desc);
    if (byName === undefined) {
      byName = new Map();
      // protobuf JSON takes the lowerCamel JSON name or the proto name; the proto name wins a clash.
      for (const field of desc.fields) byName.set(field.jsonName, field);
      for (const field of desc.fields) byName.set(field.name, field);
      this.fieldsByName.set(desc, byName);
    }
    return byName.get(name);
  }

  private deref(node: Node | null | undefined): Node | null | undefined {
    let current = node;
    for (let hops = 0; isAlias(current) && hops < 100; hops++) current = current.resolve(this.doc);
    return current;
  }

  private where(node: Node | null | undefined, fallback: Where): Where {
    const offset = node?.range?.[0];
    if (offset === undefined) return fallback;
    const { line, col } = this.lines.linePos(offset);
    return { path: fallback.path, line, column: col };
  }

  private wrong(
    at: Where,
    label: string,
    wanted: string,
    node: Node | null | undefined,
    hint = '',
  ): undefined {
    this.problem(at, `wrong type for ${label}: expected ${wanted}, got ${describe(node)}${hint}`);
    return undefined;
  }

  private problem(at: Where, message: string): void {
    this.problems.push({ ...at, message });
  }

  private warn(at: Where, message: string): void {
    this.warnings.push({ ...at, message });
  }
}

function isNull(node: Node | null | undefined): node is null | undefined {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

function describe(node: Node | null | undefined): string {
  if (isNull(node)) return 'null';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const value = node.value;
    if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
    if (typeof value === 'number' || typeof value === 'bigint') return `the number ${value}`;
    return String(value);
  }
  return 'an alias';
}

function expected(type: ScalarType): string {
  switch (type) {
    case ScalarType.STRING:
      return 'a string';
    case ScalarType.BOOL:
      return 'true or false';
    case ScalarType.BYTES:
      return 'a base64 string';
    case ScalarType.FLOAT:
    case ScalarType.DOUBLE:
      return 'a number';
    default:
      return 'an integer';
  }
}

function listType(field: DescField & { fieldKind: 'list' }): ValueType {
  if (field.listKind === 'scalar') return { scalar: field.scalar };
  if (field.listKind === 'enum') return { enum: field.enum };
  return { message: field.message };
}

function mapType(field: DescField & { fieldKind: 'map' }): ValueType {
  if (field.mapKind === 'scalar') return { scalar: field.scalar };
  if (field.mapKind === 'enum') return { enum: field.enum };
  return { message: field.message };
}

/** Well-known types whose JSON form is not an object: inside an Any they sit under "value". */
function usesValueKey(desc: DescMessage): boolean {
  return (
    WRAPPERS.has(desc.typeName) ||
    [
      'google.protobuf.Any',
      'google.protobuf.Duration',
      'google.protobuf.Timestamp',
      'google.protobuf.FieldMask',
      'google.protobuf.Struct',
      'google.protobuf.ListValue',
      'google.protobuf.Value',
    ].includes(desc.typeName)
  );
}

/** The candidate within edit distance 2 of `name`, if there is one. */
function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}
