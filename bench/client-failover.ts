/**
 * What a MasterClient user sees during failovers (issue 17): 3 `mooring master` processes (default raft timers and
 * lease TTL), W MasterClient workers with DEFAULT client settings doing put / get / remove on 16 keys, while the
 * leader is SIGKILLed (then restarted) R times and SIGSTOPped for 3 s (then SIGCONTed) R times.
 *   npm run bench:client-failover -- [--json] [--kills 20] [--stops 20] [--workers 6] [--stop-ms 3000]
 * Reports:
 *  - failures: calls that failed with anything but a definite refusal (a refusal is `definite: true` and not an
 *    availability code: OBJECT_NOT_FOUND, OBJECT_ALREADY_EXISTS, OBJECT_HAS_LEASE, ...). Goal 0.
 *  - the longest window without any successful operation (over all workers) around each fault, per fault kind.
 *    Goal ≤ election timeout + 200 ms.
 * Diagnostics: --trace DIR keeps the masters' logs in DIR and writes DIR/ops.jsonl (one line per operation: worker,
 * op, start and end ms since the bench started, outcome) and DIR/faults.json.
 */
import { ErrorCode, MooringError } from '../src/errors.js';
import { MasterClient } from '../src/master/client.js';
import { defaultConfig } from '../src/master/config.js';
import { ProcessCluster } from '../src/testing/jepsen/harness.js';
import { appendResults, machineInfo, parseArgs, percentile, round, sleep, table } from './lib/report.js';

const args = parseArgs();
const kills = args.num('kills', 20);
const stops = args.num('stops', 20);
const workers = args.num('workers', 6);
const stopMs = args.num('stop-ms', 3_000);
const traceDir = process.argv.find((a, i) => process.argv[i - 1] === '--trace') ?? null;
const keys = Array.from({ length: 16 }, (_, i) => `key-${i}`);
/** Steady load between faults, so every fault hits a warm cluster and the window before it is measured. */
const settleMs = 1_000;
/** A fault's window is [fault - before, min(fault end + after, next fault)]. */
const windowBeforeMs = 500;
const windowAfterMs = 3_000;

const electionTimeoutMs = defaultConfig.raft.tickMs * defaultConfig.raft.electionTimeoutTicks;
const availabilityCodes = new Set<string>([
  ErrorCode.NOT_LEADER, ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE, ErrorCode.RPC_FAILED, ErrorCode.SHUTTING_DOWN,
  ErrorCode.PROPOSAL_DROPPED, ErrorCode.LEADERSHIP_TRANSFER_IN_PROGRESS, ErrorCode.QUEUE_FULL, ErrorCode.BUSY, ErrorCode.OUTCOME_UNKNOWN,
  ErrorCode.STORAGE_FAILED, ErrorCode.INTERNAL,
]);

function log(msg: string): void {
  if (!args.json) process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${msg}\n`);
}

/** Polls the other masters' status until one leads (ms after the fault; NaN if none within limitMs). */
async function newLeaderAfter(cluster: ProcessCluster, old: number, atMs: number, now: () => number, limitMs: number): Promise<number> {
  while (now() - atMs < limitMs) {
    const i = await cluster.leaderIndex().catch(() => -1);
    if (i >= 0 && i !== old) return now() - atMs;
    await sleep(10);
  }
  return NaN;
}


interface Fault { kind: 'SIGKILL' | 'SIGSTOP'; atMs: number; endMs: number }

async function main(): Promise<void> {
  const loadStart = (await import('node:os')).loadavg();
  const cluster = await ProcessCluster.start({
    masters: 3,
    storageNodes: 0,
    proxies: false,
    ...(traceDir !== null ? { root: traceDir, masterLogs: true } : {}),
    masterConfig: { raft: { ...defaultConfig.raft }, leaseTtlMs: defaultConfig.leaseTtlMs, clientTtlMs: defaultConfig.clientTtlMs },
  });
  const owner = new MasterClient({ endpoints: cluster.endpoints, clientId: 'bench-owner' });
  const clients = Array.from({ length: workers }, (_, w) => new MasterClient({ endpoints: cluster.endpoints, clientId: `bench-w${w}` }));
  const successes: number[] = [];
  const failures: Array<{ atMs: number; op: string; code: string; message: string }> = [];
  const refusals = new Map<string, number>();
  let ops = 0;
  const trace: Array<{ w: number; op: string; key: string; t0: number; t1: number; out: string }> = [];
  let running = true;
  const t0 = performance.now();
  const now = (): number => performance.now() - t0;

  try {
    await owner.mountSegment({ id: 'bench-seg', name: 'bench-seg', base: 0x10000000, size: 1 << 30, protocol: 'tcp', endpoint: '127.0.0.1:1', zone: 'z1' });
    owner.startPing();
    for (const c of clients) c.startPing();

    const one = async (c: MasterClient, w: number, n: number): Promise<void> => {
      const key = keys[(w * 7 + n * 13) % keys.length]!;
      const r = (n * 31 + w) % 10;
      const op = r < 4 ? 'put' : r < 8 ? 'get' : 'remove';
      const t0op = now();
      let out = 'ok';
      try {
        if (op === 'put') {
          await c.putStart(key, 1024);
          await c.putEnd(key);
        } else if (op === 'get') {
          await c.getReplicaList(key);
        } else {
          await c.remove(key);
        }
        successes.push(now());
      } catch (err) {
        const e = err instanceof MooringError ? err : new MooringError(ErrorCode.INTERNAL, String(err));
        out = e.code;
        if (e.definite && !availabilityCodes.has(e.code)) {
          refusals.set(e.code, (refusals.get(e.code) ?? 0) + 1);
          successes.push(now()); // a definite answer from a live leader: the service answered
        } else {
          failures.push({ atMs: now(), op, code: e.code, message: e.message.slice(0, 200) });
        }
      }
      ops++;
      if (traceDir !== null) trace.push({ w, op, key, t0: round(t0op, 1), t1: round(now(), 1), out });
    };
    const loops = clients.map(async (c, w) => {
      for (let n = 0; running; n++) await one(c, w, n);
    });

    const faults: Fault[] = [];
    const electedAfter: number[] = [];
    await sleep(settleMs);
    const plan: Array<'SIGKILL' | 'SIGSTOP'> = [];
    for (let i = 0; i < Math.max(kills, stops); i++) {
      if (i < kills) plan.push('SIGKILL');
      if (i < stops) plan.push('SIGSTOP');
    }
    for (const [i, kind] of plan.entries()) {
      const leader = await cluster.waitForLeader();
      const m = cluster.masters[leader]!;
      const atMs = now();
      if (kind === 'SIGKILL') {
        await m.proc.kill();
        const endMs = now();
        faults.push({ kind, atMs, endMs });
        electedAfter.push(await newLeaderAfter(cluster, leader, atMs, now, 1_400));
        await sleep(1_500);
        await cluster.restartMaster(leader);
      } else {
        m.proc.signal('SIGSTOP');
        electedAfter.push(await newLeaderAfter(cluster, leader, atMs, now, stopMs));
        await sleep(Math.max(0, stopMs - (now() - atMs)));
        m.proc.signal('SIGCONT');
        faults.push({ kind, atMs, endMs: now() });
      }
      const firstAfter = successes.find((t) => t > atMs);
      log(`${i + 1}/${plan.length} ${kind} ${m.id}: new leader seen after ${round(electedAfter.at(-1)!, 1)} ms, first answer after ${firstAfter === undefined ? '-' : round(firstAfter - atMs, 1)} ms; ops ${ops}, failures ${failures.length}`);
      await sleep(settleMs);
    }
    await sleep(windowAfterMs); // the last fault's window is measured under load too
    running = false;
    await Promise.all(loops);

    // The longest gap between successes (answers) inside each fault's window.
    const gapIn = (f: Fault): number => {
      const g = gapAt(f);
      log(`${f.kind} at ${round(f.atMs, 0)}: longest gap ${round(g.gap, 1)} ms starting ${round(g.start - f.atMs, 1)} ms after the fault`);
      return g.gap;
    };
    const gapAt = (f: Fault): { gap: number; start: number } => {
      // The window ends before the next fault starts: its gaps are that fault's.
      const next = faults.find((g) => g.atMs > f.atMs);
      const from = f.atMs - windowBeforeMs;
      const to = Math.min(f.endMs + windowAfterMs, next?.atMs ?? Number.POSITIVE_INFINITY);
      let last = from;
      let worst = { gap: 0, start: from };
      for (const t of successes) {
        if (t < from) continue;
        if (t > to) break;
        if (t - last > worst.gap) worst = { gap: t - last, start: last };
        last = t;
      }
      return to - last > worst.gap ? { gap: to - last, start: last } : worst;
    };
    successes.sort((a, b) => a - b);
    if (traceDir !== null) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(`${traceDir}/ops.jsonl`, trace.map((x) => JSON.stringify(x)).join('\n') + '\n');
      writeFileSync(`${traceDir}/faults.json`, JSON.stringify(faults.map((f) => ({ ...f, startedAtEpochMs: Math.round(performance.timeOrigin + t0 + f.atMs) }))));
    }
    const summary = (kind: Fault['kind']) => {
      const fs = faults.filter((f) => f.kind === kind);
      const gaps = fs.map(gapIn);
      const fails = failures.filter((x) => fs.some((f) => x.atMs >= f.atMs - windowBeforeMs && x.atMs <= f.endMs + windowAfterMs + 6_000)).length; // a call may fail up to its deadline later
      return { faults: fs.length, gapP50Ms: round(percentile(gaps, 50), 1), gapMaxMs: round(Math.max(0, ...gaps), 1), failures: fails };
    };
    const result = {
      workers,
      ops,
      failures: failures.length,
      failureSamples: failures.slice(0, 10),
      definiteRefusals: Object.fromEntries(refusals),
      electionTimeoutMs,
      goalWindowMs: electionTimeoutMs + 200,
      sigkill: summary('SIGKILL'),
      sigstop: { ...summary('SIGSTOP'), stopMs },
      loadAverageStart: loadStart.map((x) => round(x, 2)),
      loadAverageEnd: (await import('node:os')).loadavg().map((x) => round(x, 2)),
      machine: machineInfo(),
    };
    if (args.json) {
      process.stdout.write(JSON.stringify(result) + '\n');
    } else {
      const rows = [
        ['leader SIGKILL', result.sigkill.faults, result.sigkill.gapP50Ms, result.sigkill.gapMaxMs, result.sigkill.failures],
        [`leader SIGSTOP ${stopMs} ms`, result.sigstop.faults, result.sigstop.gapP50Ms, result.sigstop.gapMaxMs, result.sigstop.failures],
      ];
      const body = [
        `3 \`mooring master\` processes on loopback (default raft timers: election timeout ${electionTimeoutMs} ms; lease TTL ${defaultConfig.leaseTtlMs} ms), ${workers} MasterClient workers with default client settings doing put/get/remove on 16 keys; ${result.ops} operations.`,
        `Window = longest time without any answered operation (success or definite refusal) around a fault; failures = calls that failed with anything but a definite refusal. Goal: window ≤ ${result.goalWindowMs} ms, failures 0.`,
        `Load average ${result.loadAverageStart.join(' / ')} at start, ${result.loadAverageEnd.join(' / ')} at the end (shared 2-core machine; other engineers' builds and tests ran meanwhile).`,
        '',
        table(['fault', 'count', 'window p50 ms', 'window max ms', 'failures'], rows),
        '',
        `Definite refusals (answers, not failures): ${JSON.stringify(result.definiteRefusals)}.`,
        ...(failures.length > 0 ? [`Failure samples: ${failures.slice(0, 5).map((f) => `${f.op} ${f.code} (${f.message})`).join('; ')}.`] : []),
      ].join('\n');
      process.stdout.write(body + '\n');
      if (args.has('--record')) appendResults('client-failover', `npm run bench:client-failover -- --kills ${kills} --stops ${stops} --workers ${workers} --record`, body);
    }
  } finally {
    running = false;
    await Promise.all([owner, ...clients].map((c) => c.close()));
    await cluster.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`client-failover bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
