/**
 * `mooring` CLI entry point (bin/mooring.js runs the compiled dist/src/cli/main.js).
 *   mooring master --config master.yaml      run one master node
 *   mooring admin <command> --endpoints …    operate a running cluster
 *   mooring restore --from FILE …            a fresh data dir for a new cluster from a backup
 *   mooring demo                              a local three-master cluster with traffic and a leader crash
 *   mooring --version
 * Exit codes: 0 ok, 1 failure (`error CODE: message` on stderr), 2 usage or configuration error.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { repoRoot } from '../util/repo-root.js';
import { adminCommand } from './admin-cmd.js';
import { demoCommand } from './demo-cmd.js';
import { printError } from './format.js';
import { masterCommand } from './master-cmd.js';
import { restoreCommand } from './restore-cmd.js';

const exitUsage = 2;

/** The installed package's version (package.json is the one place it is declared). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(repoRoot(import.meta.url), 'package.json'), 'utf8')) as { version: string }).version;
}

function program(): Command {
  const p = new Command('mooring')
    .description('Mooring: a Raft-replicated control plane (no etcd) for KV-cache / tiered-storage fleets')
    .version(packageVersion(), '-V, --version', 'print the mooring version')
    .showHelpAfterError('(run with --help for usage)');
  p.addCommand(masterCommand());
  p.addCommand(adminCommand());
  p.addCommand(demoCommand());
  p.addCommand(restoreCommand());
  // Usage errors exit 2 (like a bad config), not commander's default 1, so scripts can tell them apart.
  const override = (cmd: Command): void => {
    cmd.exitOverride();
    for (const sub of cmd.commands) override(sub);
  };
  override(p);
  return p;
}

try {
  await program().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version "errors" are successful exits.
    process.exitCode = err.exitCode === 0 ? 0 : exitUsage;
  } else {
    printError(err);
    process.exitCode = 1;
  }
}
