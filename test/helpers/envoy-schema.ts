import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createFileRegistry, type FileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';

/**
 * Envoy's v3 API as a protobuf-es registry, compiled by buf from the protos that
 * `@grpc/grpc-js-xds` ships (deps/envoy-api, deps/xds, deps/googleapis, deps/protoc-gen-validate).
 *
 * Every file under `envoy/` whose imports are all shipped is compiled, so any extension an
 * `envoy.yaml` names by `@type` resolves; the few that import what the package leaves out (the
 * OpenCensus and OpenTelemetry protos, the v2 API) are skipped. The packaged validate.proto predates
 * the `ignore_empty` rules Envoy's protos use, which buf refuses; the copy compiled here has them
 * added with upstream protoc-gen-validate's field numbers. The descriptor set is cached in the temp
 * folder, keyed by the package and buf versions, so only the first run pays for the build.
 */

const require = createRequire(import.meta.url);

/** Bumped whenever the file selection or the patch below changes, to invalidate cached sets. */
const FORMAT = 2;
/** The proto roots inside @grpc/grpc-js-xds/deps, searched in this order. */
const ROOTS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'] as const;
/** Upstream protoc-gen-validate's `ignore_empty` numbers, per rules message. */
const IGNORE_EMPTY: Record<string, number> = {
  ...Object.fromEntries(
    ['Float', 'Double', 'Int32', 'Int64', 'UInt32', 'UInt64', 'SInt32', 'SInt64']
      .concat(['Fixed32', 'Fixed64', 'SFixed32', 'SFixed64'])
      .map((type) => [`${type}Rules`, 8]),
  ),
  StringRules: 26,
  BytesRules: 14,
  RepeatedRules: 5,
  MapRules: 6,
};

export interface EnvoySchema {
  readonly registry: FileRegistry;
  /** Proto files compiled, relative to the roots. */
  readonly files: readonly string[];
  /** Files under envoy/ left out because something they import is not shipped. */
  readonly skipped: readonly string[];
  /** Where the descriptor set is cached, and whether this call built it. */
  readonly cacheFile: string;
  readonly built: boolean;
  readonly xdsVersion: string;
}

interface Selection {
  readonly files: string[];
  readonly skipped: string[];
}

const packageDir = (name: string) => dirname(require.resolve(`${name}/package.json`));
const packageVersion = (name: string) =>
  (JSON.parse(readFileSync(join(packageDir(name), 'package.json'), 'utf8')) as { version: string }).version;

let loaded: EnvoySchema | undefined;

/** The registry of Envoy's API; built (or read from the cache) once per process. */
export function envoySchema(): EnvoySchema {
  loaded ??= loadSchema();
  return loaded;
}

function loadSchema(): EnvoySchema {
  const depsDir = join(packageDir('@grpc/grpc-js-xds'), 'deps');
  const xdsVersion = packageVersion('@grpc/grpc-js-xds');
  const key = `grpc-js-xds-${xdsVersion}-buf-${packageVersion('@bufbuild/buf')}-f${FORMAT}`;
  const cacheDir = join(tmpdir(), 'cortex-voice-envoy-schema');
  const cacheFile = join(cacheDir, `${key}.binpb`);
  const selectionFile = join(cacheDir, `${key}.json`);
  let built = false;
  if (!existsSync(cacheFile) || !existsSync(selectionFile)) {
    const selection = selectFiles(depsDir);
    mkdirSync(cacheDir, { recursive: true });
    const image = buildDescriptorSet(depsDir, selection.files);
    // Write then rename, so a concurrent run never reads half a file.
    const partial = `${cacheFile}.${process.pid}.tmp`;
    writeFileSync(partial, image);
    writeFileSync(`${selectionFile}.${process.pid}.tmp`, JSON.stringify(selection));
    renameSync(`${selectionFile}.${process.pid}.tmp`, selectionFile);
    renameSync(partial, cacheFile);
    built = true;
  }
  const selection = JSON.parse(readFileSync(selectionFile, 'utf8')) as Selection;
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(cacheFile)));
  return { registry, ...selection, cacheFile, built, xdsVersion };
}

/** The root that holds a proto file, or undefined when the package does not ship it. */
function locate(depsDir: string, file: string): string | undefined {
  return ROOTS.map((root) => join(depsDir, root, file)).find((path) => existsSync(path));
}

const importPattern = /^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;/gm;

/** Every file under envoy/ whose imports are all available, plus everything they import. */
function selectFiles(depsDir: string): Selection {
  const importsOf = new Map<string, string[]>();
  const usable = new Map<string, boolean>();
  const isUsable = (file: string): boolean => {
    // buf supplies the well-known types itself.
    if (file.startsWith('google/protobuf/')) return true;
    const known = usable.get(file);
    if (known !== undefined) return known;
    usable.set(file, false); // imports are acyclic; this only guards against a broken tree
    const path = locate(depsDir, file);
    if (path === undefined) return false;
    const imports = [...readFileSync(path, 'utf8').matchAll(importPattern)].map((match) => match[1]!);
    importsOf.set(file, imports);
    const ok = imports.every(isUsable);
    usable.set(file, ok);
    return ok;
  };
  const roots = listProtos(join(depsDir, 'envoy-api'), 'envoy');
  const skipped = roots.filter((file) => !isUsable(file));
  const files = new Set<string>();
  const add = (file: string) => {
    if (file.startsWith('google/protobuf/') || files.has(file)) return;
    files.add(file);
    for (const imported of importsOf.get(file) ?? []) add(imported);
  };
  for (const file of roots) if (usable.get(file)) add(file);
  return { files: [...files].sort(), skipped };
}

function listProtos(root: string, dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const relative = `${dir}/${entry.name}`;
    if (entry.isDirectory()) found.push(...listProtos(root, relative));
    else if (entry.name.endsWith('.proto')) found.push(relative);
  }
  return found.sort();
}

/** Adds the `ignore_empty` fields Envoy's protos use to an older validate.proto. */
export function patchValidateProto(source: string): string {
  let patched = source;
  for (const [message, number] of Object.entries(IGNORE_EMPTY)) {
    const start = patched.search(new RegExp(`\\bmessage\\s+${message}\\s*\\{`));
    if (start < 0) throw new Error(`validate.proto has no message ${message}`);
    let depth = 0;
    let end = patched.indexOf('{', start);
    for (; end < patched.length; end++) {
      if (patched[end] === '{') depth++;
      else if (patched[end] === '}' && --depth === 0) break;
    }
    const body = patched.slice(start, end);
    if (/\bignore_empty\b/.test(body)) continue;
    if (new RegExp(`=\\s*${number}\\s*[;\\[]`).test(body)) {
      throw new Error(`validate.proto: ${message} already uses field number ${number}`);
    }
    patched = `${patched.slice(0, end)}    optional bool ignore_empty = ${number};\n${patched.slice(end)}`;
  }
  return patched;
}

/** Copies the selected files into a temporary buf workspace and builds a FileDescriptorSet. */
function buildDescriptorSet(depsDir: string, files: readonly string[]): Buffer {
  const workspace = mkdtempSync(join(tmpdir(), 'cortex-voice-envoy-protos-'));
  try {
    for (const file of files) {
      const source = locate(depsDir, file);
      if (source === undefined) throw new Error(`${file} vanished from ${depsDir}`);
      const target = join(workspace, file);
      mkdirSync(dirname(target), { recursive: true });
      if (file === 'validate/validate.proto')
        writeFileSync(target, patchValidateProto(readFileSync(source, 'utf8')));
      else copyFileSync(source, target);
    }
    writeFileSync(join(workspace, 'buf.yaml'), 'version: v2\n');
    const output = join(workspace, 'envoy.binpb');
    const buf = join(packageDir('@bufbuild/buf'), 'bin', 'buf');
    execFileSync(process.execPath, [buf, 'build', '--exclude-source-info', '--output', output], {
      cwd: workspace,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120_000,
    });
    return readFileSync(output);
  } finally {
    rmSync(workspace, { recursive: true, force: true });
  }
}
