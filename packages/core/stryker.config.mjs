// StrykerJS over @bnmlp/core: the shared settings of scripts/stryker-config.mjs.
import { strykerConfig } from '../../scripts/stryker-config.mjs';

export default strykerConfig('core');
