// StrykerJS over @bnmlp/reference: the shared settings of scripts/stryker-config.mjs.
import { strykerConfig } from '../../scripts/stryker-config.mjs';

export default strykerConfig('reference');
