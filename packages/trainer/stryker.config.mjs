// StrykerJS over @bnmlp/trainer (only with `pnpm mutation -- --package trainer`): the shared
// settings of scripts/stryker-config.mjs, except that the sandbox keeps the build. The data
// helper thread and the search's trial processes run dist/, so the tests need it there; mutants
// are made in src/ only, so code that runs only in those threads and processes is out of reach.
import { strykerConfig } from '../../scripts/stryker-config.mjs';

const shared = strykerConfig('trainer');
export default { ...shared, ignorePatterns: shared.ignorePatterns.filter((pattern) => pattern !== 'dist') };
