/**
 * A small reader of Dockerfiles for tests: instructions with line continuations joined, grouped
 * into stages. Enough for the project's own Dockerfile, not a full BuildKit parser.
 */

export interface DockerInstruction {
  /** Upper-case instruction, e.g. RUN, COPY. */
  readonly keyword: string;
  /** Everything after the keyword, continuations joined with single spaces. */
  readonly args: string;
}

export interface DockerStage {
  readonly base: string;
  readonly name: string | undefined;
  readonly instructions: readonly DockerInstruction[];
}

export interface Dockerfile {
  /** ARG lines before the first FROM, with their defaults. */
  readonly globalArgs: ReadonlyMap<string, string>;
  readonly stages: readonly DockerStage[];
}

export function parseDockerfile(source: string): Dockerfile {
  const logical: string[] = [];
  let pending = '';
  for (const raw of source.split('\n')) {
    const line = raw.trimEnd();
    if (pending === '' && (line.trim() === '' || line.trim().startsWith('#'))) continue;
    if (pending !== '' && line.trim().startsWith('#')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    logical.push((pending + line.trim()).trim());
    pending = '';
  }
  if (pending !== '') logical.push(pending.trim());

  const globalArgs = new Map<string, string>();
  const stages: { base: string; name: string | undefined; instructions: DockerInstruction[] }[] = [];
  for (const line of logical) {
    const match = /^(\w+)\s*(.*)$/s.exec(line);
    if (!match) continue;
    const keyword = match[1]!.toUpperCase();
    const args = match[2]!.trim();
    if (keyword === 'FROM') {
      const from = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`Dockerfile: cannot read FROM ${args}`);
      stages.push({ base: expand(from[1]!, globalArgs), name: from[2], instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined) {
      if (keyword === 'ARG') {
        const [name, value = ''] = args.split('=', 2);
        globalArgs.set(name!.trim(), value.trim());
      }
      continue;
    }
    stage.instructions.push({ keyword, args });
  }
  return { globalArgs, stages };
}

function expand(value: string, args: ReadonlyMap<string, string>): string {
  return value.replace(
    /\$\{(\w+)\}|\$(\w+)/g,
    (_, braced: string, bare: string) => args.get(braced ?? bare) ?? '',
  );
}

/** The arguments of an exec-form instruction (JSON array), or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) return undefined;
  return parsed;
}

/** COPY sources and destination, without flags; `from` is the --from stage when there is one. */
export function copyArguments(args: string): {
  from: string | undefined;
  sources: string[];
  destination: string;
} {
  const words = execForm(args) ?? args.split(/\s+/);
  let from: string | undefined;
  const rest: string[] = [];
  for (const word of words) {
    if (word.startsWith('--from=')) from = word.slice('--from='.length);
    else if (!word.startsWith('--')) rest.push(word);
  }
  const destination = rest.pop();
  if (destination === undefined || rest.length === 0) throw new Error(`Dockerfile: cannot read COPY ${args}`);
  return { from, sources: rest, destination };
}

/** The command of a RUN instruction without its --mount/--network flags. */
export function runCommand(args: string): string {
  return args.replace(/^(?:--\S+\s+)*/, '');
}

/** HEALTHCHECK options and its CMD, exec form. */
export function healthcheck(args: string): { options: Map<string, string>; command: string[] } {
  const options = new Map<string, string>();
  let rest = args;
  for (;;) {
    const option = /^--([\w-]+)=(\S+)\s+/.exec(rest);
    if (!option) break;
    options.set(option[1]!, option[2]!);
    rest = rest.slice(option[0].length);
  }
  const cmd = /^CMD\s+(.*)$/s.exec(rest);
  const command = cmd ? execForm(cmd[1]!.trim()) : undefined;
  if (command === undefined) throw new Error(`Dockerfile: HEALTHCHECK should use CMD in exec form: ${args}`);
  return { options, command };
}
