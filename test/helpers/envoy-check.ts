import { type Decoded, type DecodedMessage, decodeEnvoyYaml, type Problem } from './envoy-decode.js';
import { checkEnvoyRules } from './envoy-rules.js';
import { envoySchema } from './envoy-schema.js';

/** The two checks of an Envoy bootstrap file, with Envoy's API protos from @grpc/grpc-js-xds. */
export interface EnvoyCheck {
  /** Unknown fields, wrong types, bad enum values and @types, YAML errors. */
  readonly decode: readonly Problem[];
  /** protoc-gen-validate rules: required fields and oneofs, ranges, lengths, defined enums. */
  readonly rules: readonly Problem[];
  /** Deprecated fields and values. */
  readonly warnings: readonly Problem[];
  readonly message: DecodedMessage;
}

export function checkEnvoyConfig(source: string): EnvoyCheck {
  const { registry } = envoySchema();
  const decoded = decodeEnvoyYaml(source, registry);
  return {
    decode: decoded.problems,
    rules: checkEnvoyRules(decoded.message, registry),
    warnings: decoded.warnings,
    message: decoded.message,
  };
}

/** Every google.protobuf.Any in the tree, in document order. */
export function anyValues(root: DecodedMessage): Extract<Decoded, { kind: 'any' }>[] {
  const found: Extract<Decoded, { kind: 'any' }>[] = [];
  const visit = (value: Decoded) => {
    switch (value.kind) {
      case 'message':
        for (const entry of value.fields.values()) visit(entry.value);
        break;
      case 'any':
        found.push(value);
        if (value.message) visit(value.message);
        if (value.unpacked) visit(value.unpacked);
        break;
      case 'list':
        for (const item of value.items) visit(item);
        break;
      case 'map':
        for (const entry of value.entries) visit(entry.value);
        break;
    }
  };
  visit(root);
  return found;
}
