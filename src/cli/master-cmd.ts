/**
 * `mooring master`: runs one master node in this process.
 *
 * Precedence: defaults < --config file < MOORING_* env < flags (loadConfig does the merging and validation).
 * Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 2 for an invalid configuration, 1 for any other failure
 * to start, 70 when the Raft node stops on a storage failure (crash-stop: better than serving from a log it
 * could not persist; also on an uncaught storage error, see installProcessGuard). A second signal during a graceful stop exits at once (128 + signal number).
 */
import { Command, Option } from 'commander';
import { ConfigError, loadConfig, peerAuthProblem, type MasterConfig } from '../master/config.js';
import { MasterNode } from '../master/master-node.js';
import { ErrorCode, MooringError } from '../errors.js';
import { printError } from './format.js';
import { watchParent } from '../util/parent.js';

/** How often the node's readiness is checked until the one "ready" line is logged. */
const readyPollIntervalMs = 50;
/** How often a child started with --exit-with-parent checks that its parent is still there. */
export const exitConfigError = 2;
export const exitStorageFailure = 70;

interface MasterFlags {
  config?: string;
  nodeId?: string;
  clusterId?: string;
  dataDir?: string;
  host?: string;
  advertiseHost?: string;
  raftPort?: string;
  rpcPort?: string;
  httpPort?: string;
  logLevel?: string;
  logPretty?: boolean;
  adminTokenFile?: string;
  set?: string[];
  exitWithParent?: boolean;
}

export function masterCommand(): Command {
  return new Command('master')
    .description('run one master node (flags override the file; MOORING_<FIELD> env vars override the file too)')
    .option('-c, --config <file>', 'YAML configuration file (see docs/configuration.md)')
    .option('--node-id <id>', 'this node id (nodeId)')
    .option('--cluster-id <id>', 'cluster id (clusterId)')
    .option('--data-dir <dir>', 'data directory (dataDir)')
    .option('--host <host>', 'listen address (listen.host)')
    .option('--advertise-host <host>', 'address peers and clients use (advertiseHost)')
    .option('--raft-port <port>', 'peer port (listen.raftPort)')
    .option('--rpc-port <port>', 'client RPC port (listen.rpcPort)')
    .option('--http-port <port>', '/health /ready /metrics /status port (listen.httpPort)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (log.level)')
    .option('--log-pretty', 'human-readable log lines instead of JSON (log.pretty)')
    .option('--admin-token-file <file>', 'file holding the admin token (adminTokenFile)')
    .option('--set <field=value...>', 'any other field by its dotted path, e.g. --set raft.tickMs=10 (repeatable)')
    .addOption(new Option('--exit-with-parent', 'stop when the parent process dies (used by `mooring demo`)').hideHelp())
    .action(async (flags: MasterFlags) => {
      await runMaster(flags);
    });
}

/** Errno codes of a disk that cannot take writes: the process crash-stops on these (see installProcessGuard). */
const storageErrnoCodes = new Set(['ENOSPC', 'EIO', 'EROFS', 'EDQUOT', 'EFBIG']);
/** Uncaught errors logged in full per interval; the rest are counted and summarized (no log flood). */
export const uncaughtLogBudgetPerInterval = 10;
export const uncaughtLogIntervalMs = 10_000;

/** True for a genuine storage failure (a durable write or read failed), the only reason to crash-stop. */
export function isStorageFailure(err: unknown): boolean {
  if (err instanceof MooringError) return err.code === ErrorCode.STORAGE_FAILED || err.code === ErrorCode.CORRUPT_LOG;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && storageErrnoCodes.has(code);
}

/**
 * Process-level guard: an uncaught exception or unhandled rejection is logged (a bounded number of lines per
 * interval) and the node keeps serving; Raft state is only changed through validated inputs, so a stray error in
 * a connection or timer callback must not take a member down (issue 11: one hostile connection could end every
 * master). Only a storage failure crash-stops (exit 70): serving from a log that could not be persisted is worse.
 */
export function installProcessGuard(logger: { error(o: object, m: string): void; fatal(o: object, m: string): void }, crashStop: () => void): void {
  let windowStart = Date.now();
  let logged = 0;
  let suppressed = 0;
  const onError = (kind: string) => (err: unknown): void => {
    if (isStorageFailure(err)) {
      logger.fatal({ err: (err as Error)?.stack ?? String(err) }, `${kind}: storage failure, crash-stop`);
      crashStop();
      return;
    }
    const now = Date.now();
    if (now - windowStart >= uncaughtLogIntervalMs) {
      if (suppressed > 0) logger.error({ suppressed, intervalMs: uncaughtLogIntervalMs }, `${kind}: further errors not logged`);
      windowStart = now;
      logged = 0;
      suppressed = 0;
    }
    if (logged >= uncaughtLogBudgetPerInterval) {
      suppressed++;
      return;
    }
    logged++;
    logger.error({ err: (err as Error)?.stack ?? String(err) }, `${kind}: logged, node keeps running`);
  };
  process.on('uncaughtException', onError('uncaught exception'));
  process.on('unhandledRejection', onError('unhandled rejection'));
}

/** Flag overrides; a malformed `--set` goes into `problems` so it is reported with every other problem. */
function overridesFrom(flags: MasterFlags, problems: string[]): Record<string, unknown> {
  const o: Record<string, unknown> = {
    nodeId: flags.nodeId,
    clusterId: flags.clusterId,
    dataDir: flags.dataDir,
    'listen.host': flags.host,
    advertiseHost: flags.advertiseHost,
    'listen.raftPort': flags.raftPort,
    'listen.rpcPort': flags.rpcPort,
    'listen.httpPort': flags.httpPort,
    'log.level': flags.logLevel,
    'log.pretty': flags.logPretty === true ? 'true' : undefined,
    adminTokenFile: flags.adminTokenFile,
  };
  for (const kv of flags.set ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) {
      problems.push(`config: --set ${JSON.stringify(kv)} must be field=value`);
      continue;
    }
    o[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return o;
}

async function runMaster(flags: MasterFlags): Promise<void> {
  let config: MasterConfig;
  const setProblems: string[] = [];
  try {
    config = loadConfig({ ...(flags.config !== undefined ? { file: flags.config } : {}), overrides: overridesFrom(flags, setProblems) });
    if (setProblems.length > 0) throw new ConfigError(setProblems, 'flags');
  } catch (err) {
    if (err instanceof ConfigError) {
      const all = err.problems === setProblems ? err : new ConfigError([...setProblems, ...err.problems], flags.config ?? 'env and flags');
      process.stderr.write(`${all.message}\n`);
      process.exit(exitConfigError);
    }
    throw err;
  }
  // Peers authenticate by default: refuse to start a cluster member that would accept any peer.
  const authProblem = peerAuthProblem(config);
  if (authProblem !== null) {
    process.stderr.write(`${authProblem}\n`);
    process.exit(exitConfigError);
  }

  let node: MasterNode | null = null;
  let stopRequested: string | null = null;
  let exiting = false;
  const exit = (code: number): void => {
    if (exiting) return;
    exiting = true;
    process.exit(code);
  };
  const stopGracefully = (reason: string): void => {
    if (stopRequested !== null) {
      // Second signal: the operator wants out now.
      node?.logger.warn({ reason }, 'second stop request: exiting without waiting');
      process.exit(128 + (reason === 'SIGINT' ? 2 : 15));
    }
    stopRequested = reason;
    if (node === null) return; // still starting: stopped right after start
    node.logger.info({ reason }, 'stop requested: graceful stop');
    node.stop().then(
      () => exit(0),
      (err) => {
        printError(err);
        exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stopGracefully('SIGTERM'));
  process.on('SIGINT', () => stopGracefully('SIGINT'));
  if (flags.exitWithParent === true) {
    watchParent(() => {
      if (stopRequested === null) stopGracefully('parent exited');
    });
  }

  try {
    node = await MasterNode.start(config);
  } catch (err) {
    printError(err);
    process.exit(1);
  }
  const started = node;
  installProcessGuard(started.logger, () => exit(exitStorageFailure));
  started.raftNode.on('fatal', (err: Error) => {
    started.logger.fatal({ err: err.message }, 'storage failure: crash-stop (restart the process once the disk is fixed)');
    // MasterNode closes its stores on its own; the process may then end naturally (hence exitCode) or not.
    process.exitCode = exitStorageFailure;
    setTimeout(() => process.exit(exitStorageFailure), 1_000);
  });
  if (stopRequested !== null) {
    const reason: string = stopRequested;
    stopRequested = null;
    stopGracefully(reason);
    return;
  }
  // One line when the node can serve: it knows a leader and has applied everything committed.
  const poll = setInterval(() => {
    if (stopRequested !== null) return clearInterval(poll);
    const r = started.readiness();
    if (!r.ready) return;
    clearInterval(poll);
    started.logger.info(
      { leader: started.leaderId, isLeader: started.isLeader, ports: started.ports, dataDir: config.dataDir },
      'ready',
    );
  }, readyPollIntervalMs);
}
