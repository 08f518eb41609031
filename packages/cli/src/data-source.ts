import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { CIFAR_DIR_ENV, DATA_DIR_ENV, TrainerArgumentError, defaultCacheDir, detectCifarLayout, isCifarDirectory, locateSharedCifar, type CifarLayout } from '@bnmlp/trainer';
import { CliArgumentError, quote } from './errors.js';

/** Where a command's CIFAR-10 data came from. */
export type DataSourceKind = 'option' | 'download' | 'env' | 'shared' | 'fixture';

export interface DataSource {
  readonly kind: DataSourceKind;
  /** The directory holding the batch files (for a parent folder, its cifar-10-batches-* inside). */
  readonly dir: string;
  readonly format: CifarLayout['format'];
  /** One line for the output, saying what the data is and why it was chosen. */
  readonly description: string;
}

export const TINY_FIXTURE_RELATIVE_PATH = join('fixtures', 'cifar-10-tiny');

export interface DataSourceContext {
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
  /** Where the search for the shared subset and the repository's fixture starts; default this module's directory. */
  readonly moduleDir?: string;
  /** Replaces the search for the shared subset (tests: `() => null` when it is present). */
  readonly locateShared?: () => string | null;
}

/** The repository's generated fixture, found by walking up from `start`; null outside a checkout. */
export function locateTinyFixture(start: string): string | null {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    const candidate = join(dir, TINY_FIXTURE_RELATIVE_PATH);
    if (isCifarDirectory(candidate)) return candidate;
    if (dirname(dir) === dir) return null;
  }
}

function layoutOf(dir: string): CifarLayout | null {
  try {
    return detectCifarLayout(dir);
  } catch {
    return null;
  }
}

const LAYOUT_EXPECTED = 'a CIFAR-10 directory (cifar-10-batches-bin, -py or -mat, or a folder holding one)';

/**
 * `--data DIR` when given (any official layout, or the folder holding one); else $BNMLP_DATA (the
 * `bnmlp download` cache) when it holds a data set; else the shared CIFAR-10 subset
 * (BNMLP_CIFAR_DIR, or shared/datasets/cifar-10-subset above the working directory or this
 * installation); else the repository's synthetic fixture.
 */
export function resolveDataSource(op: string, argument: string, data: string | null, context: DataSourceContext = {}): DataSource {
  const env = context.env ?? process.env;
  const moduleDir = context.moduleDir ?? dirname(fileURLToPath(import.meta.url));
  if (data !== null) {
    const layout = layoutOf(resolve(context.cwd ?? process.cwd(), data));
    if (!layout) throw new CliArgumentError(op, argument, LAYOUT_EXPECTED, quote(data));
    return { kind: 'option', dir: layout.dir, format: layout.format, description: `CIFAR-10 ${layout.format} data from ${layout.dir} (given by ${argument})` };
  }
  if (env[DATA_DIR_ENV]) {
    const cache = defaultCacheDir(env);
    const layout = existsSync(cache) ? layoutOf(cache) : null;
    if (layout) return { kind: 'download', dir: layout.dir, format: layout.format, description: `CIFAR-10 ${layout.format} data from ${layout.dir} (from $${DATA_DIR_ENV})` };
  }
  let shared: string | null;
  try {
    shared = context.locateShared ? context.locateShared() : locateSharedCifar({ env, cwd: context.cwd, moduleDir });
  } catch (error) {
    if (!(error instanceof TrainerArgumentError && error.argument === CIFAR_DIR_ENV)) throw error;
    throw new CliArgumentError(op, `$${CIFAR_DIR_ENV}`, 'a CIFAR-10 binary directory (containing data_batch_1.bin)', quote(env[CIFAR_DIR_ENV] ?? ''));
  }
  if (shared) {
    const why = env[CIFAR_DIR_ENV] ? ` (from $${CIFAR_DIR_ENV})` : '';
    return { kind: env[CIFAR_DIR_ENV] ? 'env' : 'shared', dir: shared, format: 'binary', description: `real CIFAR-10 images: the shared subset at ${shared}${why}` };
  }
  const fixture = locateTinyFixture(moduleDir);
  if (fixture)
    return {
      kind: 'fixture',
      dir: fixture,
      format: 'binary',
      description: `the generated fixture ${fixture} (synthetic images, not CIFAR-10: shared/datasets/cifar-10-subset was not found; set $${CIFAR_DIR_ENV} or pass ${argument})`,
    };
  throw new CliArgumentError(
    op, argument,
    `given: neither $${DATA_DIR_ENV}, the shared CIFAR-10 subset ($${CIFAR_DIR_ENV}, shared/datasets/cifar-10-subset) nor ${TINY_FIXTURE_RELATIVE_PATH} was found (run \`bnmlp download\` to fetch CIFAR-10)`,
    'no data directory',
  );
}
