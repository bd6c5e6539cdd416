/**
 * A storage-client process: an engine with DRAM segments (and optionally a DISK segment) mounted with the
 * masters, kept alive by its ping loop, carrying out tier tasks. Used by test/e2e, the jepsen campaign and the
 * demo. Prints one JSON line `{"ready":true,"clientId":…,"pid":…}` on stdout once mounted; SIGTERM closes it.
 *
 *   node dist/src/store/storage-node-main.js --masters h:p,h:p,h:p [--memory-bytes N] [--segments N]
 *        [--disk PATH --disk-bytes N] [--zone Z] [--client-id ID] [--cluster-id C] [--slot-bytes N]
 */
import { StoreClient } from './store-client.js';
import { watchParent } from '../util/parent.js';

/** How long a starting storage node keeps trying to mount with the masters, and the pause between tries. */
const startupTimeoutMs = 60_000;
const startupRetryMs = 500;

function parseArgs(argv: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value`);
    m.set(a.slice(2), v);
    i++;
  }
  return m;
}

function int(m: Map<string, string>, k: string, d: number): number {
  const v = m.get(k);
  if (v === undefined) return d;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${k} must be a non-negative integer`);
  return n;
}

/** With MOORING_EXIT_WITH_PARENT=1 (test harnesses), exit when the parent process is gone. */
function exitWithParent(): void {
  if (process.env.MOORING_EXIT_WITH_PARENT === '1') watchParent(() => process.exit(0));
}

async function main(): Promise<void> {
  exitWithParent();
  const args = parseArgs(process.argv.slice(2));
  const masters = (args.get('masters') ?? '').split(',').filter((s) => s.length > 0);
  if (masters.length === 0) throw new Error('--masters host:port[,host:port…] is required');
  const disk = args.get('disk');
  // Masters may be between leaders when this process starts: keep trying for a while before giving up.
  const deadline = Date.now() + startupTimeoutMs;
  const create = (): Promise<StoreClient> => StoreClient.create({
    masters,
    ...(args.has('cluster-id') ? { clusterId: args.get('cluster-id')! } : {}),
    ...(args.has('client-id') ? { clientId: args.get('client-id')! } : {}),
    ...(args.has('zone') ? { zone: args.get('zone')! } : {}),
    memory: { size: int(args, 'memory-bytes', 64 * 1024 * 1024), count: int(args, 'segments', 1) },
    ...(disk !== undefined ? { disk: { path: disk, size: int(args, 'disk-bytes', 256 * 1024 * 1024) } } : {}),
    ...(args.has('slot-bytes') ? { stagingSlotBytes: int(args, 'slot-bytes', 0) } : {}),
    pingIntervalMs: int(args, 'ping-ms', 500),
  });
  let client: StoreClient;
  for (;;) {
    try {
      client = await create();
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, startupRetryMs));
    }
  }
  process.stdout.write(JSON.stringify({ ready: true, clientId: client.clientId, pid: process.pid, endpoint: client.engine.endpoint }) + '\n');
  const stop = (): void => {
    void client.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Keep the process alive (the ping timer is unref'd).
  setInterval(() => {}, 1 << 30);
}

main().catch((err) => {
  process.stderr.write(`storage node failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
