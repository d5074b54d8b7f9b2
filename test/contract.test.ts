import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { repoRoot } from './helpers/paths.js';

const root = repoRoot();
const buf = join(root, 'node_modules/.bin/buf');

function copyContract(): string {
  const dir = mkdtempSync(join(tmpdir(), 'voice-proto-'));
  cpSync(join(root, 'proto'), join(dir, 'proto'), { recursive: true });
  cpSync(join(root, 'buf.yaml'), join(dir, 'buf.yaml'));
  return dir;
}

describe('contract', () => {
  it('passes buf lint with the STANDARD rules', () => {
    const result = spawnSync(buf, ['lint'], { cwd: root, encoding: 'utf8' });
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(readFileSync(join(root, 'buf.yaml'), 'utf8'), /- STANDARD/);
  });

  it('has buf breaking catch a change that would break clients', () => {
    const before = copyContract();
    const after = copyContract();
    const file = join(after, 'proto/cortex/voice/v1/synthesis.proto');
    writeFileSync(file, readFileSync(file, 'utf8').replace('float speed = 2;', 'double speed = 2;'));
    const input = spawnSync(buf, ['build', before, '-o', join(before, 'image.binpb')], { encoding: 'utf8' });
    assert.equal(input.status, 0, input.stderr);
    const unchanged = spawnSync(buf, ['breaking', before, '--against', join(before, 'image.binpb')], {
      encoding: 'utf8',
    });
    assert.equal(unchanged.status, 0, unchanged.stdout + unchanged.stderr);
    const changed = spawnSync(buf, ['breaking', after, '--against', join(before, 'image.binpb')], {
      encoding: 'utf8',
    });
    assert.notEqual(changed.status, 0);
    assert.match(changed.stdout + changed.stderr, /speed.*type/i);
  });

  it('documents every service, RPC, message, field and enum value', () => {
    const result = spawnSync(buf, ['build', '-o', '-#format=json'], {
      cwd: root,
      encoding: 'utf8',
      maxBuffer: 16 * 1024 * 1024,
    });
    assert.equal(result.status, 0, result.stderr);
    const image = JSON.parse(result.stdout) as {
      file: Array<{
        name: string;
        sourceCodeInfo: { location: Array<{ path?: number[]; leadingComments?: string }> };
        messageType?: unknown[];
      }>;
    };
    const undocumented: string[] = [];
    for (const file of image.file) {
      const documented = new Set(
        file.sourceCodeInfo.location
          .filter((location) => location.leadingComments?.trim())
          .map((location) => (location.path ?? []).join('.')),
      );
      // Paths of declarations: services (6.i), methods (6.i.2.j), messages (4.i), fields (4.i.2.j),
      // enums (5.i) and their values (5.i.2.j), nested oneofs are documented through their fields.
      for (const location of file.sourceCodeInfo.location) {
        const path = location.path ?? [];
        const isDeclaration =
          (path.length === 2 && [4, 5, 6].includes(path[0]!)) ||
          (path.length === 4 && [4, 5, 6].includes(path[0]!) && path[2] === 2);
        if (isDeclaration && !documented.has(path.join('.')))
          undocumented.push(`${file.name}:${path.join('.')}`);
      }
    }
    assert.deepEqual(undocumented, []);
  });
});
