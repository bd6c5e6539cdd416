/**
 * `mooring restore --from FILE --data-dir DIR --config FILE`: a fresh data dir for one member of a new cluster
 * from a backup (`mooring admin backup`). Run once per member with its own config; then start the members.
 * Also `runBackupToFile`, the body of `mooring admin backup FILE`.
 */
import { createWriteStream, renameSync, rmSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import { Command } from 'commander';
import { ConfigError, loadConfig } from '../master/config.js';
import type { MasterClient } from '../master/client.js';
import type { BackupResult } from '../master/backup.js';
import { restoreDataDir } from '../master/backup-restore.js';
import { formatBytes, writeOut } from './format.js';

/** Progress lines on a terminal are redrawn at most this often. */
const progressIntervalMs = 250;

function progress(label: string): (done: number, total?: number) => void {
  let last = 0;
  return (done, total) => {
    const now = Date.now();
    if (!process.stderr.isTTY || now - last < progressIntervalMs) return;
    last = now;
    const pct = total !== undefined && total > 0 ? ` (${((done / total) * 100).toFixed(0)}%)` : '';
    process.stderr.write(`\r${label}: ${formatBytes(done)}${pct}   `);
  };
}

/** Writes the backup to `file.partial` and renames it when complete: a failed backup never looks like a good one. */
export async function runBackupToFile(client: MasterClient, file: string): Promise<BackupResult> {
  const tmp = `${file}.partial`;
  const out = createWriteStream(tmp);
  const p = progress('backup');
  try {
    const r = await client.backup(out, (x) => p(x.bytes));
    out.end();
    await finished(out);
    renameSync(tmp, file);
    if (process.stderr.isTTY) process.stderr.write('\n');
    return r;
  } catch (err) {
    out.destroy();
    rmSync(tmp, { force: true });
    throw err;
  }
}

interface RestoreFlags {
  from: string;
  dataDir: string;
  config: string;
  nodeId?: string;
  clusterId?: string;
  clusterUid?: string;
  json?: boolean;
}

export function restoreCommand(): Command {
  return new Command('restore')
    .description('write a fresh data dir for one member of a NEW cluster from a backup file (run once per member)')
    .requiredOption('--from <file>', 'backup file written by `mooring admin backup`')
    .requiredOption('--data-dir <dir>', 'the data dir to create (must not exist or be empty)')
    .requiredOption('-c, --config <file>', 'this member\'s config (nodeId, clusterId, peers = the new membership)')
    .option('--node-id <id>', 'this member (overrides the config)')
    .option('--cluster-id <id>', 'cluster id of the restored cluster (default: the config\'s)')
    .option('--cluster-uid <uid>', 'identity of the restored cluster (default: derived from the file and the membership)')
    .option('--json', 'print JSON')
    .action(async (f: RestoreFlags) => {
      let config;
      try {
        config = loadConfig({ file: f.config, overrides: { dataDir: f.dataDir, nodeId: f.nodeId, clusterId: f.clusterId } });
      } catch (err) {
        if (err instanceof ConfigError) {
          process.stderr.write(`${err.message}\n`);
          process.exit(2);
        }
        throw err;
      }
      const p = { verify: progress('verify'), restore: progress('restore') };
      const r = await restoreDataDir({ file: f.from, config, ...(f.clusterUid !== undefined ? { clusterUid: f.clusterUid } : {}), onProgress: (ph, d, t) => p[ph](d, t) });
      if (process.stderr.isTTY) process.stderr.write('\n');
      await writeOut(f.json === true ? `${JSON.stringify(r)}\n`
        : `restored ${r.objectCount} objects at index ${r.index} into ${r.dataDir} (cluster ${r.clusterId}/${r.clusterUid}, voters ${r.voters.join(', ')})\n`);
    });
}
