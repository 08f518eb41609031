#!/usr/bin/env node
// Makes a fresh clone runnable with only Node + npm: installs dependencies with the pinned pnpm
// when the install is missing or older than a manifest/lockfile, then builds every package
// (turbo caches, so a second run is quick). `--quiet` prints only errors from the build. All of it
// goes to stderr, so a command run after setup (e.g. `gradcheck --json`) owns stdout.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPnpm } from './pnpm.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');

function mtime(path) {
  return existsSync(path) ? statSync(path).mtimeMs : 0;
}

function manifests() {
  const packageDirs = readdirSync(join(root, 'packages')).map((name) => join(root, 'packages', name));
  return [join(root, 'package.json'), join(root, 'pnpm-lock.yaml'), join(root, 'pnpm-workspace.yaml'),
    ...packageDirs.map((dir) => join(dir, 'package.json'))];
}

const installMarker = join(root, 'node_modules', '.modules.yaml');
const installedAt = mtime(installMarker);
if (installedAt === 0 || manifests().some((file) => mtime(file) > installedAt)) {
  const frozen = existsSync(join(root, 'pnpm-lock.yaml')) && process.env.CI ? ['--frozen-lockfile'] : [];
  const status = runPnpm(['install', ...frozen], { stdio: [0, 2, 2] });
  if (status !== 0) process.exit(status);
}
const buildArgs = ['exec', 'turbo', 'run', 'build'];
if (quiet) buildArgs.push('--output-logs=errors-only', '--log-prefix=none');
process.exit(runPnpm(buildArgs, { stdio: quiet ? [0, 'ignore', 2] : [0, 2, 2] }));
