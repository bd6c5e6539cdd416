/**
 * `mooring demo`: three masters as child processes on loopback, two simulated storage clients, put/get/remove
 * traffic with a live progress line, a SIGKILL of the leader, the failover measured (kill → next acknowledged
 * write), the killed master restarted from its disk, and a final check that every acknowledged object is still
 * there with its replicas. Exit 0 when nothing was lost, 1 otherwise; Ctrl-C cleans up (children and temp dir).
 */
import { Command } from 'commander';
import { MasterClient } from '../master/client.js';
import { formatBytes, parseInteger, table, writeOut } from './format.js';
import { LocalCluster } from './local-cluster.js';
import { Traffic, engineDataPath, metadataOnlyDataPath, readBackAll, startStorageClient, verifyAcked, type DemoDataPath, type StorageClient } from './demo-traffic.js';

const defaultSeconds = 24;
const defaultKeys = 2_000;
const demoObjectBytes = 64 * 1024;
const demoReplicaNum = 2;
const demoConcurrencyPerClient = 8;
/** Fractions of the traffic time at which the leader is killed and then restarted. */
const killAtFraction = 0.35;
const restartAtFraction = 0.6;
const ttyRefreshMs = 200;
const plainRefreshMs = 1_000;
const leaderPollMs = 300;
/** After traffic stops, how long the restarted member may take to reach the same state hash. */
const convergeTimeoutMs = 15_000;
/** Faster elections than the default 25 ms ticks: the demo should show failover quickly. */
const demoRaft = { tickMs: 20, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 };
/** A short read lease so removes are seen too (the default 10 s would refuse most of them in a short demo). */
const demoLeaseTtlMs = 2_000;

interface DemoFlags {
  keys: string;
  seconds: string;
  keep?: boolean;
  seed?: string;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('three masters + two storage clients on loopback: traffic, a leader SIGKILL, failover, and a check that no acknowledged object was lost')
    .option('--keys <n>', 'key space size', String(defaultKeys))
    .option('--seconds <s>', 'traffic duration in seconds', String(defaultSeconds))
    .option('--seed <n>', 'traffic RNG seed (default: time)')
    .option('--keep', 'keep the temp dir (configs, logs, data) for inspection')
    .action(async (flags: DemoFlags) => {
      const code = await runDemo({
        keys: parseInteger(flags.keys, '--keys', 10, 1_000_000),
        seconds: parseInteger(flags.seconds, '--seconds', 3, 3_600),
        keep: flags.keep === true,
        seed: flags.seed !== undefined ? parseInteger(flags.seed, '--seed') : Date.now() % 1_000_000,
      });
      process.exit(code);
    });
}

interface DemoOptions {
  keys: number;
  seconds: number;
  keep: boolean;
  seed: number;
  dataPath?: DemoDataPath;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runDemo(opts: DemoOptions): Promise<number> {
  // Real bytes through the native engine when it is built; metadata only (with a notice) when it is not.
  const realBytes = opts.dataPath === undefined ? await engineDataPath() : null;
  const dataPath = opts.dataPath ?? realBytes ?? metadataOnlyDataPath;
  const tty = process.stdout.isTTY === true;
  const say = (line: string): void => {
    process.stdout.write(`${tty ? '\r\x1b[2K' : ''}${line}\n`);
  };
  if (opts.dataPath === undefined && realBytes === null) say('notice: the native engine is not built (npm run build:native): this demo moves metadata only');
  let cluster: LocalCluster | null = null;
  let traffic: Traffic | null = null;
  const clients: StorageClient[] = [];
  let checker: MasterClient | null = null;
  let timers: NodeJS.Timeout[] = [];
  let interrupted = false;

  const cleanup = async (): Promise<void> => {
    for (const t of timers) clearInterval(t);
    timers = [];
    await traffic?.stop().catch(() => {});
    await Promise.all(clients.map((c) => c.close()));
    await checker?.close().catch(() => {});
    await dataPath.close().catch(() => {});
    await cluster?.destroy({ keepDir: opts.keep });
  };
  const onSignal = (sig: string): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    say(`${sig}: stopping the demo, its masters, and removing ${cluster?.dir ?? 'the temp dir'}`);
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Last resort (an exception on the way out): never leave children behind.
  process.on('exit', () => cluster?.killAllSync());

  try {
    say(`mooring demo: 3 masters (child processes), 2 storage clients, ${opts.keys} keys, ${opts.seconds} s of traffic, seed ${opts.seed}`);
    say(`data path: ${dataPath.description}`);
    cluster = await LocalCluster.create({ clusterId: 'mooring-demo', extraConfig: { raft: demoRaft, leaseTtlMs: demoLeaseTtlMs } });
    say(`starting masters in ${cluster.dir}`);
    await cluster.start();
    const firstLeader = await cluster.waitLeader();
    say(`masters ready: ${cluster.nodes.map((n) => `${n.id}@127.0.0.1:${n.ports.rpc}`).join(', ')}; leader ${firstLeader}`);

    for (let i = 0; i < 2; i++) clients.push(await startStorageClient(i, cluster.endpoints, cluster.clusterId, dataPath, demoConcurrencyPerClient));
    say(`storage clients: ${clients.map((c) => `${c.id} (${c.segments.length} × ${formatBytes(c.segments[0]!.size)})`).join(', ')}`);

    traffic = new Traffic({ clients, keys: opts.keys, objectBytes: demoObjectBytes, replicaNum: demoReplicaNum, leaseTtlMs: demoLeaseTtlMs, dataPath, seed: opts.seed });
    const t0 = Date.now();
    let leader: string | null = firstLeader;
    const leaderTimer = setInterval(() => {
      void cluster?.leader().then((l) => {
        if (l !== null && l !== leader) say(`leader is now ${l} (was ${leader ?? 'none'})`);
        if (l !== null) leader = l;
      });
    }, leaderPollMs);
    timers.push(leaderTimer);
    let lastOps = 0;
    let lastAt = t0;
    const tr = traffic;
    const progress = (): string => {
      const now = Date.now();
      const rate = ((tr.ops - lastOps) * 1000) / Math.max(1, now - lastAt);
      lastOps = tr.ops;
      lastAt = now;
      const c = tr.counters;
      return `t=${((now - t0) / 1000).toFixed(1)}s  ${Math.round(rate)} ops/s  puts ${c.puts}  gets ${c.gets}  removes ${c.removes}  errors ${c.errors}  leader ${leader ?? '?'}`;
    };
    timers.push(setInterval(() => {
      if (tty) process.stdout.write(`\r\x1b[2K${progress()}`);
      else say(progress());
    }, tty ? ttyRefreshMs : plainRefreshMs));
    traffic.start();

    const trafficMs = opts.seconds * 1000;
    await sleep(trafficMs * killAtFraction);
    const victim = (await cluster.leader()) ?? firstLeader;
    // Failover as a client sees it: a write issued right after the kill, retried until acknowledged
    // (a reply the old leader sent just before dying cannot count: this write starts after it died).
    const probe = clients[0]!.client;
    await cluster.kill(victim, 'SIGKILL');
    const killAt = Date.now();
    const probeKey = `demo-probe/${killAt}`;
    const failover = probe.putStart(probeKey, demoObjectBytes, { replicaNum: 1 }).then(() => Date.now() - killAt, () => null);
    say(`SIGKILL leader ${victim} at t=${((killAt - t0) / 1000).toFixed(1)}s`);
    const newLeader = await cluster.waitLeader(30_000, victim);
    const electedAt = Date.now();
    say(`${newLeader} elected ${electedAt - killAt} ms after the kill`);

    await sleep(Math.max(0, t0 + trafficMs * restartAtFraction - Date.now()));
    say(`restarting ${victim} from its data dir`);
    cluster.spawn(victim);
    const rejoined = cluster.waitReady(victim).then(() => say(`${victim} rejoined as a follower and caught up`));

    await sleep(Math.max(0, t0 + trafficMs - Date.now()));
    await traffic.stop();
    for (const t of timers) clearInterval(t);
    timers = [];
    const elapsedMs = Date.now() - t0;
    await rejoined;

    say('traffic stopped; checking every acknowledged object on the cluster');
    checker = new MasterClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId, retry: { maxAttempts: 20, initialBackoffMs: 50, maxBackoffMs: 500 } });
    const acked = traffic.ackedKeys();
    const { lost } = await verifyAcked(checker, acked, demoReplicaNum);
    // With real bytes: read every acknowledged object back and compare bytes and checksum.
    const readBack = dataPath === metadataOnlyDataPath ? null : await readBackAll(checker, acked, dataPath);
    const converged = await waitConverged(cluster, convergeTimeoutMs);

    const c = traffic.counters;
    const failoverMs = await failover;
    const totalOps = traffic.ops;
    const lostCount = lost.length + c.missingOnRead + (readBack?.failed.filter((k) => !lost.includes(k)).length ?? 0);
    const rows = [
      ['traffic', `${(elapsedMs / 1000).toFixed(1)} s, ${totalOps} operations, ${Math.round((totalOps * 1000) / elapsedMs)} ops/s`],
      ['puts acknowledged', c.puts],
      ['gets', c.gets],
      ['removes', c.removes],
      ['removes refused (read lease)', c.leaseRefused],
      ['failed operations', c.errors === 0 ? 0 : `${c.errors} ${JSON.stringify(c.errorsByCode)}`],
      ['leader killed (SIGKILL)', `${victim} at t=${((killAt - t0) / 1000).toFixed(1)} s`],
      ['new leader', `${newLeader} after ${electedAt - killAt} ms`],
      ['failover: kill → next acked write', failoverMs !== null ? `${failoverMs} ms` : 'the write issued after the kill FAILED'],
      ['acknowledged objects checked', `${acked.length} (each with ${demoReplicaNum} replicas)`],
      ['outcome unknown (excluded)', traffic.uncertainCount()],
      ...(readBack !== null ? [['objects read back intact (bytes + crc32)', `${readBack.intact} of ${acked.length}`]] : []),
      ['LOST acknowledged objects', lostCount],
      ['members identical (state hash)', converged],
    ].map(([k, v]) => ({ what: k, result: v }));
    say('');
    await writeOut(`${table(rows, ['what', 'result'])}\n`);
    if (lost.length > 0) say(`lost keys (first 10): ${lost.slice(0, 10).join(', ')}`);
    if (traffic.lastError !== null) say(`last error: ${traffic.lastError}`);
    const ok = lostCount === 0;
    say(ok ? 'demo passed: no acknowledged object was lost' : 'demo FAILED: acknowledged objects were lost');
    await cleanup();
    if (opts.keep) say(`kept ${cluster.dir}`);
    return ok ? 0 : 1;
  } catch (err) {
    say(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
    await cleanup();
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

async function waitConverged(cluster: LocalCluster, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const st = await Promise.all(cluster.nodes.map((n) => cluster.status(n.id, { stateHash: true })));
    const hashes = st.map((s) => (s ? String(s.stateHash) : null));
    const applied = st.map((s) => (s ? Number(s.applied) : -1));
    if (hashes.every((h) => h !== null && h === hashes[0]) && applied.every((a) => a === applied[0])) {
      return `yes, ${hashes.length}/${hashes.length} at index ${applied[0]} (${hashes[0]!.slice(0, 12)}…)`;
    }
    last = `no: applied ${applied.join('/')}`;
    if (Date.now() > deadline) return last;
    await sleep(200);
  }
}
