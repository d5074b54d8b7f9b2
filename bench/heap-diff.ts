/**
 * Compares two V8 heap snapshots (e.g. `npm run soak -- --heap-snapshots DIR` takes one after the
 * warm-up and one at the end): objects grouped by type and constructor name, the groups that grew
 * most in count and in self size. A leak shows as a group that grows with the number of calls.
 *
 *   node dist/bench/heap-diff.js before.heapsnapshot after.heapsnapshot [--top 25]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fmt, table } from './stt-stats.js';

interface Snapshot {
  readonly snapshot: { readonly meta: { readonly node_fields: string[]; readonly node_types: unknown[] } };
  readonly nodes: number[];
  readonly strings: string[];
}

interface Group {
  count: number;
  size: number;
}

/** Self size and count of every (type, name) group in a snapshot. */
export function groups(file: string): Map<string, Group> {
  const data = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = data.snapshot.meta.node_fields;
  const types = data.snapshot.meta.node_types[0] as string[];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const result = new Map<string, Group>();
  for (let at = 0; at < data.nodes.length; at += width) {
    const type = types[data.nodes[at + typeAt] ?? 0] ?? '?';
    const rawName = data.strings[data.nodes[at + nameAt] ?? 0] ?? '';
    // Strings and numbers are named by their value: group them by type alone.
    const name =
      type === 'string' || type === 'number' || type === 'concatenated string' || type === 'sliced string'
        ? ''
        : rawName.slice(0, 60);
    const key = `${type} ${name}`.trim();
    const group = result.get(key) ?? { count: 0, size: 0 };
    group.count += 1;
    group.size += data.nodes[at + sizeAt] ?? 0;
    result.set(key, group);
  }
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    options: { top: { type: 'string', default: '25' } },
    allowPositionals: true,
  });
  const [beforeFile, afterFile] = positionals;
  if (beforeFile === undefined || afterFile === undefined) {
    throw new Error('usage: heap-diff.js before.heapsnapshot after.heapsnapshot [--top 25]');
  }
  const before = groups(beforeFile);
  const after = groups(afterFile);
  const keys = new Set([...before.keys(), ...after.keys()]);
  const rows = [...keys].map((key) => {
    const b = before.get(key) ?? { count: 0, size: 0 };
    const a = after.get(key) ?? { count: 0, size: 0 };
    return { key, b, a, dCount: a.count - b.count, dSize: a.size - b.size };
  });
  const top = Number(values.top);
  const render = (sorted: typeof rows) =>
    table(
      ['type and constructor', 'count before', 'count after', 'Δ count', 'Δ KiB'],
      sorted
        .slice(0, top)
        .map((row) => [
          row.key,
          String(row.b.count),
          String(row.a.count),
          String(row.dCount),
          fmt(row.dSize / 1024, 1),
        ]),
    );
  const total = (map: Map<string, Group>) => [...map.values()].reduce((sum, group) => sum + group.size, 0);
  process.stdout.write(
    [
      `Heap: ${fmt(total(before) / 1024 / 1024, 1)} MiB → ${fmt(total(after) / 1024 / 1024, 1)} MiB (self sizes)`,
      '',
      '### Grew most in size',
      '',
      render([...rows].sort((x, y) => y.dSize - x.dSize)),
      '',
      '### Grew most in count',
      '',
      render([...rows].sort((x, y) => y.dCount - x.dCount)),
      '',
    ].join('\n'),
  );
}
