/**
 * A custom master binary built from the library: your own flags, logging or extra endpoints around the same
 * MasterNode that `mooring master` runs. Run: node dist/examples/custom-master.js master.yaml
 */
import { ConfigError, MasterNode, loadConfig } from '../src/index.js'; // in your app: from 'mooring'

const file = process.argv[2] ?? 'master.yaml';
let config;
try {
  // Defaults < file < MOORING_* env < overrides (here: none).
  config = loadConfig({ file, overrides: { 'log.level': process.env.LOG_LEVEL } });
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(err.message); // one line per problem, each naming its field
  process.exit(2);
}

const node = await MasterNode.start(config);
node.logger.info({ ports: node.ports }, 'custom master up');

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1); // a second signal: leave now
    stopping = true;
    // Graceful: hand leadership over, finish in-flight requests, close the stores.
    node.stop().then(() => process.exit(0), () => process.exit(1));
  });
}
