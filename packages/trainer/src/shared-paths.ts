import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/**
 * The first `<ancestor>/<relative>` that satisfies `accept`, walking up from each start directory
 * in turn (so `../shared` beside the repository is found from anywhere inside it), or null.
 */
export function findInAncestors(relative: string, accept: (path: string) => boolean, starts: readonly string[]): string | null {
  for (const start of starts) {
    for (let dir = resolve(start); ; dir = dirname(dir)) {
      const candidate = join(dir, relative);
      if (accept(candidate)) return candidate;
      if (dirname(dir) === dir) break;
    }
  }
  return null;
}

export function isFile(path: string): boolean {
  return existsSync(path) && statSync(path).isFile();
}
