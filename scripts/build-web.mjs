// Builds the browser SDK (`@cortex/voice/web`) and the demo page into dist/web/:
//   voice-web.js (+ .map)   the SDK: one minified ES module (ES2022), gRPC-Web via connect-web
//   mic-worklet.js          the microphone AudioWorklet as a file of its own, for pages whose CSP
//                           refuses blob: scripts (the SDK inlines it as a Blob URL otherwise)
//   types/                  .d.ts of the SDK (tsc -p tsconfig.web.json)
//   index.html, demo.js, demo.css   the demo page the web transport serves at /
// Run by `npm run build` after tsc, or alone as `npm run build:web`; `--outdir DIR` writes
// elsewhere (the web transport serves DIR/web/ when it runs from DIR/server/…).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outFlag = args.indexOf('--outdir');
const out = resolve(root, outFlag >= 0 ? (args[outFlag + 1] ?? 'dist/web') : 'dist/web');
const web = join(root, 'clients/web');
const quiet = args.includes('--quiet');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
  absWorkingDir: root,
};

// The SDK.
await build({ ...common, entryPoints: { 'voice-web': join(web, 'index.ts') }, outdir: out });

// The worklet on its own: the processor, registered under the SDK's name.
await build({
  ...common,
  stdin: {
    contents:
      "import { defineMicProcessor, MIC_PROCESSOR_NAME } from './mic-worklet.js';\ndefineMicProcessor(MIC_PROCESSOR_NAME);\n",
    resolveDir: web,
    sourcefile: 'mic-worklet-module.ts',
    loader: 'ts',
  },
  outfile: join(out, 'mic-worklet.js'),
});

// The demo, importing the shipped SDK bundle rather than a second copy of it.
const useShippedSdk = {
  name: 'use-shipped-sdk',
  setup(plugin) {
    plugin.onResolve({ filter: /^\.\.\/index\.js$/ }, () => ({ path: './voice-web.js', external: true }));
  },
};
await build({
  ...common,
  entryPoints: [join(web, 'demo/demo.ts')],
  outfile: join(out, 'demo.js'),
  plugins: [useShippedSdk],
});
await build({ ...common, entryPoints: [join(web, 'demo/demo.css')], outfile: join(out, 'demo.css') });
copyFileSync(join(web, 'demo/index.html'), join(out, 'index.html'));

// Declarations.
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.web.json'), '--outDir', join(out, 'types')], {
  stdio: 'inherit',
  cwd: root,
});

if (!quiet) {
  for (const file of ['voice-web.js', 'mic-worklet.js', 'demo.js', 'demo.css']) {
    const bytes = readFileSync(join(out, file));
    const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
    process.stdout.write(
      `build-web: ${relative(root, join(out, file))} ${kib(bytes.length)} min, ${kib(gzipSync(bytes).length)} gzip\n`,
    );
  }
}
