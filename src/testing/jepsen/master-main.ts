/**
 * A master process for the e2e suite and the fault campaign: `node master-main.js '<config JSON>'`. Prints one
 * JSON line `{"ready":true,...}` once serving; SIGTERM stops it gracefully. (The CLI's `mooring master` does the
 * same with YAML and flags; this entry keeps the harness independent of the CLI's options.)
 */
import { parseConfig } from '../../master/config.js';
import { MasterNode } from '../../master/master-node.js';
import pino from 'pino';
import { createLogger, silentLogger } from '../../master/logger.js';
import { watchParent } from '../../util/parent.js';

/** With MOORING_EXIT_WITH_PARENT=1 (test harnesses), exit when the parent process is gone. */
function exitWithParent(): void {
  if (process.env.MOORING_EXIT_WITH_PARENT === '1') watchParent(() => process.exit(0));
}

async function main(): Promise<void> {
  exitWithParent();
  const raw = process.argv[2];
  if (raw === undefined) throw new Error('usage: master-main.js <config JSON>');
  const config = parseConfig(JSON.parse(raw) as Record<string, unknown>);
  // MOORING_LOG_FILE: append info-level JSON lines there (the campaign keeps them for a failure report).
  const logFile = process.env.MOORING_LOG_FILE;
  const logger = logFile !== undefined && logFile !== ''
    ? createLogger({ level: 'info', name: 'mooring-master', nodeId: config.nodeId, pretty: false, destination: pino.destination({ dest: logFile, sync: true, append: true }) })
    : silentLogger();
  const node = await MasterNode.start(config, { logger, http: false });
  process.stdout.write(JSON.stringify({ ready: true, id: config.nodeId, pid: process.pid, ports: node.ports }) + '\n');
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    void node.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`master failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
