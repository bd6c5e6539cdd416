/**
 * The fault campaign (`npm run jepsen -- --minutes M [--seed S] [--json]`): real master and storage processes,
 * a seeded schedule of faults (SIGKILL, SIGSTOP/SIGCONT, graceful and crash restarts, partitions and delays on
 * master ↔ master links through FaultProxy, storage nodes killed and replaced), concurrent put/get/remove
 * traffic through StoreClients, the client-visible history checked for linearizability against a write-once
 * register (model.ts), and every byte checked. Exits non-zero on any violation.
 *
 * Storage nodes hold the only copies of the bytes: when every replica of an object was on storage nodes that died
 * (before the masters re-replicated it), the campaign adds a `lose` operation (absent from then on, at any point)
 * to the history. Everything else must survive. One fault kills a storage node and waits until the repairs gave
 * every key 2 live replicas again; from then on the campaign tracks the repaired placement.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ErrorCode, MooringError } from '../../errors.js';
import { StoreClient } from '../../store/store-client.js';
import { SeededRng } from '../../util/rng.js';
import { checkLinearizability, type Operation } from '../linearizability.js';
import { ProcessCluster, sleep } from './harness.js';
import { storeModel, type StoreInput, type StoreOutput } from './model.js';

/** Clients whose expiry is traced in the masters' logs at the end of a run, and the lines printed per master. */
const maxExpiredClientsTraced = 8;
const maxExpiryLogLines = 20;

export interface CampaignOptions {
  durationMs: number;
  seed?: number;
  keys?: number;
  workers?: number;
  maxObjectBytes?: number;
  /** raft.followerLeaseTicks for the masters (follower read leases; absent: the config default, off). */
  followerLeaseTicks?: number;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
}

export interface CampaignResult {
  seed: number;
  durationS: number;
  ops: number;
  acked: number;
  unknown: number;
  failed: number;
  lost: number;
  wrong: number;
  linearizable: boolean;
  inconclusiveKeys: number;
  faults: Record<string, number>;
  /** Definite failures and unknown outcomes by op and error code. */
  errors: Record<string, number>;
  counterexample?: string;
  /** Kept on a violation: master logs, data dirs and report.json (timeline, the key's history, placements). */
  artifacts?: string;
}

/** Outcomes that say nothing about whether the operation took effect. */
const unknownCodes = new Set<string>([
  ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE, ErrorCode.RPC_FAILED, ErrorCode.NOT_LEADER, ErrorCode.PROPOSAL_DROPPED,
  ErrorCode.SHUTTING_DOWN, ErrorCode.LEADERSHIP_TRANSFER_IN_PROGRESS, ErrorCode.QUEUE_FULL, ErrorCode.INTERNAL,
  ErrorCode.OUTCOME_UNKNOWN,
]);

/**
 * The code an operation failed with, and whether its outcome is unknown (it may have taken effect): an unknown code,
 * or the client's own word (`definite: false`: SESSION_EXPIRED on a retry, src/master/client.ts; a lease refusal with
 * an attempt of unknown fate, src/client/leader-client.ts). A definite failure that had applied makes a later read
 * look non-linearizable.
 */
export function failureOf(e: unknown): { code: ErrorCode; unknown: boolean } {
  let code: ErrorCode = e instanceof MooringError ? e.code : ErrorCode.INTERNAL;
  // A write retried after its seq left the exactly-once reply window is refused, but its first attempt may
  // have been applied: the outcome is unknown, not a definite failure.
  if (code === ErrorCode.INVALID_ARGUMENT && e instanceof MooringError && /reply window/.test(e.message)) code = ErrorCode.TIMEOUT;
  return { code, unknown: unknownCodes.has(code) || (e instanceof MooringError && e.definite === false) };
}

const valueHeaderBytes = 4;
/** The tmpfs holding one master's data dir (the full-disk fault fills it). */
const fullDiskTmpfsBytes = 256 * 1024 * 1024;

/** Payload of value number `id`: its id, then bytes derived from it (any mix-up of objects shows). */
export function valueBytes(id: number, maxBytes: number): Buffer {
  const len = valueHeaderBytes + (Math.imul(id, 2654435761) >>> 0) % Math.max(1, maxBytes - valueHeaderBytes);
  const b = Buffer.alloc(len);
  b.writeUInt32LE(id, 0);
  let x = (id ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = valueHeaderBytes; i < len; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

function decodeValue(b: Buffer, maxBytes: number): string {
  if (b.length < valueHeaderBytes) return `CORRUPT(short ${b.length})`;
  const id = b.readUInt32LE(0);
  return valueBytes(id, maxBytes).equals(b) ? `v${id}` : `CORRUPT(v${id}?, ${b.length} bytes)`;
}

function clientOfSegment(segmentId: string): string {
  const i = segmentId.lastIndexOf('/');
  return i < 0 ? segmentId : segmentId.slice(0, i);
}

export async function runCampaign(opts: CampaignOptions): Promise<CampaignResult> {
  const seed = opts.seed ?? (Date.now() % 1_000_000_007);
  const rng = new SeededRng(seed);
  const log = opts.log ?? (() => {});
  // More keys for longer runs, so each key's history stays well inside the checker's per-key bound.
  const keyCount = opts.keys ?? Math.max(64, Math.ceil((opts.durationMs / 60_000) * 16));
  const workers = opts.workers ?? 6;
  const maxBytes = opts.maxObjectBytes ?? 32 * 1024;
  const faults: Record<string, number> = {};
  const timeline: Array<{ t: number; event: string }> = [];
  const count = (f: string): void => {
    faults[f] = (faults[f] ?? 0) + 1;
  };
  /** Nemesis events in the history's clock (performance.now()), for failure reports. */
  const mark = (event: string): void => {
    const t = performance.now();
    timeline.push({ t, event });
    log(`t=${Math.round(t)} ${event}`);
  };
  const errors: Record<string, number> = {};
  /** Master-side ids of clients whose session expired: their lines in the masters' logs are printed at the end. */
  const expiredClients = new Set<string>();
  /** Each failed operation's error (code, message, and its cause's): report.json lists them with the bad key's ops. */
  const errorOf = new WeakMap<object, string>();
  const countError = (rec: Operation<StoreInput, StoreOutput>, e: unknown): ErrorCode => {
    const op = rec.op;
    const f = failureOf(e);
    const cause = e instanceof MooringError && e.cause instanceof MooringError ? ` (cause ${e.cause.code}: ${e.cause.message})` : '';
    errorOf.set(rec, `${f.code}${f.unknown ? ' (indefinite)' : ''}: ${e instanceof Error ? e.message : String(e)}${cause} after ${Math.round(performance.now() - rec.call)} ms`);
    // A code that is definite in general but not this time counts apart, and the call sites (which tell unknown
    // outcomes by their code) get OUTCOME_UNKNOWN for it.
    const indefinite = f.unknown && !unknownCodes.has(f.code);
    // Sealed refusals (SealRefusal: the leader recorded the refusal for the write's seq) count apart too.
    const sealed = e instanceof MooringError && e.sealed;
    const k = `${op}:${f.code}${indefinite ? '(indefinite)' : ''}${sealed ? '(sealed)' : ''}`;
    errors[k] = (errors[k] ?? 0) + 1;
    // A busy client's session should never expire: when one does, the timeline says when (the masters' logs name the
    // client they expired), so the run can be lined up with the logs.
    if (f.code === ErrorCode.SESSION_EXPIRED) {
      mark(`client ${String(rec.clientId)}: ${op} of ${rec.key} refused SESSION_EXPIRED (${e instanceof Error ? e.message : String(e)})`);
      const id = /of client (\S+) is not open/.exec(e instanceof Error ? e.message : '')?.[1];
      if (id !== undefined && expiredClients.size < maxExpiredClientsTraced) expiredClients.add(id);
    }
    return indefinite ? ErrorCode.OUTCOME_UNKNOWN : f.code;
  };
  const history: Operation<StoreInput, StoreOutput>[] = [];
  const placement = new Map<string, string[]>(); // value → storage clientIds of its replicas
  let acked = 0;
  let unknown = 0;
  let failed = 0;
  let wrong = 0;
  let nextValue = 1;
  const started = Date.now();

  const cluster = await ProcessCluster.start({
    masters: 3,
    storageNodes: 3,
    storage: { memoryBytes: 32 << 20, pingMs: 300 },
    // Short leases so removals are not mostly refused with OBJECT_HAS_LEASE right after a read.
    masterConfig: { clientTtlMs: 4_000, leaseTtlMs: 500, ...(opts.followerLeaseTicks !== undefined ? { raft: { followerLeaseTicks: opts.followerLeaseTicks } } : {}) },
    fullDisk: { node: 2, bytes: fullDiskTmpfsBytes },
    masterLogs: true,
  });
  if (cluster.fullDiskUnavailable !== null) log(`full-disk faults disabled: ${cluster.fullDiskUnavailable}`);
  const clients: StoreClient[] = [];
  let keep = false;
  try {
    for (let i = 0; i < 2; i++) {
      clients.push(await StoreClient.create({
        masters: cluster.endpoints,
        retry: { maxAttempts: 4, initialBackoffMs: 50, maxBackoffMs: 400 },
        requestTimeoutMs: 1_500,
        stagingSlotBytes: Math.max(64 * 1024, maxBytes + 4096),
        transferTimeoutMs: 1_500,
      }));
    }
    const now = (): number => performance.now();
    const keys = Array.from({ length: keyCount }, (_, i) => `j${i}`);

    /** Keys whose every replica is on dead storage incarnations get a `lose` operation. */
    const injectLosses = (at: number): void => {
      for (const key of keys) {
        const lastPut = [...history].reverse().find((o) => o.key === key && o.input.kind === 'put' && (o.return === undefined || (o.output !== undefined && 'ok' in o.output && o.output.ok)));
        if (lastPut === undefined) continue;
        const where = placement.get((lastPut.input as { value: string }).value);
        if (where === undefined || where.every((c) => cluster.deadStorageClients.has(c))) {
          history.push({ clientId: 'faults', op: 'lose', key, input: { kind: 'lose' }, call: at });
        }
      }
    };

    /**
     * After a storage node is lost: wait until every present key has 2 replicas on live storage nodes again (the
     * masters' re-replication), then record where each key's replicas are now. False on timeout.
     */
    const waitForRepair = async (timeoutMs: number): Promise<boolean> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const where = new Map<string, string[]>();
        let healthy = true;
        for (const key of keys) {
          try {
            const { replicas } = await clients[0]!.master.getReplicaList(key);
            const owners = replicas.map((r) => clientOfSegment(r.segmentId));
            where.set(key, owners);
            if (owners.filter((c) => !cluster.deadStorageClients.has(c)).length < 2) healthy = false;
          } catch {
            // absent or not complete: nothing to repair
          }
        }
        if (healthy) {
          for (const [key, owners] of where) {
            const lastPut = [...history].reverse().find((o) => o.key === key && o.input.kind === 'put' && (o.return === undefined || (o.output !== undefined && 'ok' in o.output && o.output.ok)));
            if (lastPut !== undefined) placement.set((lastPut.input as { value: string }).value, owners);
          }
          return true;
        }
        if (Date.now() > deadline) {
          // Which keys held the repair up, and where their replicas are: the timeline says why (a key whose replicas
          // were all on dead storage cannot be repaired; one with a live replica should have been).
          const stuck = [...where].filter(([, owners]) => owners.filter((c) => !cluster.deadStorageClients.has(c)).length < 2).slice(0, 8);
          mark(`nemesis: repair incomplete for ${stuck.map(([k, owners]) => `${k} on [${owners.map((c) => `${c}${cluster.deadStorageClients.has(c) ? ' (dead)' : ''}`).join(', ')}]`).join('; ')}`);
          return false;
        }
        await sleep(500);
      }
    };

    let stop = false;
    /** Each worker's last observation per key (drives the op mix only; the checker ignores it). */
    const lastSeen = new Map<string, boolean>();
    const worker = async (w: number): Promise<void> => {
      const r = new SeededRng(seed * 31 + w);
      const client = clients[w % clients.length]!;
      while (!stop) {
        const key = keys[r.nextInt(keys.length)]!;
        // Mostly put where we last saw nothing, else read or remove: keeps every key cycling through its lifecycle.
        const dice = r.nextInt(100);
        const present = lastSeen.get(key) === true;
        const doPut = present ? dice < 10 : dice < 70;
        const doRemove = !doPut && present && dice >= 60;
        const call = now();
        if (doPut) {
          const id = nextValue++;
          const value = `v${id}`;
          const op: Operation<StoreInput, StoreOutput> = { clientId: w, op: 'put', key, input: { kind: 'put', value }, call };
          try {
            const res = await client.put(key, valueBytes(id, maxBytes), { replicas: 2 });
            op.output = { ok: true };
            op.return = now();
            lastSeen.set(key, true);
            const where = res.replicas.map((x) => clientOfSegment(x.segmentId));
            placement.set(value, where);
            acked++;
            if (where.every((c) => cluster.deadStorageClients.has(c))) {
              history.push(op);
              history.push({ clientId: 'faults', op: 'lose', key, input: { kind: 'lose' }, call: op.return });
              continue;
            }
          } catch (e) {
            const code = countError(op, e);
            if (code === ErrorCode.OBJECT_ALREADY_EXISTS) lastSeen.set(key, true);
            if (unknownCodes.has(code)) unknown++;
            else {
              op.output = { ok: false };
              op.return = now();
              failed++;
            }
          }
          history.push(op);
        } else if (!doRemove) {
          const op: Operation<StoreInput, StoreOutput> = { clientId: w, op: 'get', key, input: { kind: 'get' }, call };
          try {
            const bytes = await client.get(key);
            const v = decodeValue(bytes, maxBytes);
            if (v.startsWith('CORRUPT')) wrong++;
            op.output = { value: v };
            op.return = now();
            lastSeen.set(key, true);
          } catch (e) {
            const code = countError(op, e);
            if (code === ErrorCode.OBJECT_NOT_FOUND || code === ErrorCode.OBJECT_NOT_READY) {
              op.output = { value: null };
              op.return = now();
              lastSeen.set(key, false);
            } else unknown++; // a failed read constrains nothing
          }
          history.push(op);
        } else {
          const op: Operation<StoreInput, StoreOutput> = { clientId: w, op: 'remove', key, input: { kind: 'remove' }, call };
          try {
            await client.remove(key);
            op.output = { ok: true };
            op.return = now();
            lastSeen.set(key, false);
          } catch (e) {
            const code = countError(op, e);
            if (code === ErrorCode.OBJECT_NOT_FOUND) {
              op.output = { ok: false, notFound: true };
              op.return = now();
              lastSeen.set(key, false);
            } else if (unknownCodes.has(code)) unknown++;
            else {
              op.output = { ok: false };
              op.return = now();
              failed++;
            }
          }
          history.push(op);
        }
        await sleep(r.nextInt(20));
      }
    };

    const nemesis = async (): Promise<void> => {
      const until = started + opts.durationMs;
      while (Date.now() < until - 2_000) {
        await sleep(1_000 + rng.nextInt(2_000));
        if (Date.now() >= until - 2_000) break;
        // Bring back whatever a failed step left down, so faults stay one (or two) at a time.
        for (let i = 0; i < cluster.masters.length; i++) {
          if (cluster.masters[i]!.proc.state !== 'down') continue;
          await cluster.startMaster(i).then(() => mark(`nemesis: restarted master ${cluster.masters[i]!.id} (left down)`), (e) => mark(`restart of ${cluster.masters[i]!.id} failed: ${String(e)}`));
        }
        for (let i = 0; i < cluster.storage.length; i++) {
          if (cluster.storage[i]!.proc.state !== 'down') continue;
          await cluster.startStorage(i).then(() => mark(`nemesis: storage node s${i + 1} restarted (left down)`), (e) => mark(`restart of s${i + 1} failed: ${String(e)}`));
        }
        const kind = rng.nextInt(11);
        const m = rng.nextInt(cluster.masters.length);
        try {
          switch (kind) {
            case 0: {
              const leader = await cluster.leaderIndex();
              const victim = leader >= 0 ? leader : m;
              mark(`nemesis: SIGKILL master ${cluster.masters[victim]!.id}${leader >= 0 ? ' (leader)' : ''}`);
              count(leader >= 0 ? 'kill-leader' : 'kill-master');
              await cluster.masters[victim]!.proc.kill();
              await sleep(500 + rng.nextInt(3_000));
              await cluster.startMaster(victim);
              count('restart-master');
              mark(`nemesis: restarted master ${cluster.masters[victim]!.id}`);
              break;
            }
            case 1: {
              mark(`nemesis: SIGSTOP master ${cluster.masters[m]!.id}`);
              count('sigstop-master');
              cluster.masters[m]!.proc.signal('SIGSTOP');
              await sleep(1_000 + rng.nextInt(4_000));
              cluster.masters[m]!.proc.signal('SIGCONT');
              mark(`nemesis: SIGCONT master ${cluster.masters[m]!.id}`);
              break;
            }
            case 2:
            case 3: {
              const mode = kind === 2 ? 'cut' : 'drop';
              mark(`nemesis: partition master ${cluster.masters[m]!.id} (${mode})`);
              count(`partition-${mode}`);
              cluster.isolate(m, mode);
              await sleep(1_500 + rng.nextInt(4_000));
              cluster.heal();
              mark('nemesis: healed');
              break;
            }
            case 4: {
              const a = m;
              const b = (m + 1 + rng.nextInt(cluster.masters.length - 1)) % cluster.masters.length;
              mark(`nemesis: one-way cut ${cluster.masters[a]!.id} -> ${cluster.masters[b]!.id}`);
              count('one-way-cut');
              cluster.setLink(a, b, 'cut');
              await sleep(1_500 + rng.nextInt(3_000));
              cluster.heal();
              mark('nemesis: healed');
              break;
            }
            case 5: {
              const ms = 20 + rng.nextInt(150);
              mark(`nemesis: delay all raft links ${ms} ms`);
              count('delay');
              for (const p of cluster.proxies.values()) p.setMode('delay', ms);
              await sleep(2_000 + rng.nextInt(3_000));
              cluster.heal();
              mark('nemesis: healed');
              break;
            }
            case 6: {
              mark(`nemesis: graceful restart of master ${cluster.masters[m]!.id}`);
              count('graceful-restart-master');
              await cluster.masters[m]!.proc.terminate();
              await sleep(200 + rng.nextInt(1_000));
              await cluster.startMaster(m);
              mark(`nemesis: restarted master ${cluster.masters[m]!.id}`);
              break;
            }
            case 7: {
              if (cluster.storage.some((s) => s.proc.state !== 'up')) break;
              const s = rng.nextInt(cluster.storage.length);
              mark(`nemesis: SIGKILL storage node s${s + 1}`);
              count('kill-storage');
              const dead = await cluster.killStorage(s);
              mark(`nemesis: storage client ${dead} is dead`);
              injectLosses(now());
              await sleep(1_000 + rng.nextInt(3_000));
              await cluster.startStorage(s);
              count('restart-storage');
              mark(`nemesis: storage node s${s + 1} restarted as ${cluster.storage[s]!.clientId}`);
              break;
            }
            case 8: {
              const i = 2;
              if (cluster.masters[i]!.proc.state !== 'up' || !cluster.fillDisk()) break;
              mark(`nemesis: disk full on master ${cluster.masters[i]!.id}`);
              count('full-disk');
              await sleep(1_000 + rng.nextInt(3_000));
              cluster.freeDisk();
              mark(`nemesis: disk freed on master ${cluster.masters[i]!.id}`);
              // A master that could not persist stops (crash-stop by design): bring it back.
              if ((cluster.masters[i]!.proc.state as string) === 'down') {
                count('full-disk-crash-stop');
                await cluster.startMaster(i);
              }
              break;
            }
            case 9: {
              // The leader paused longer than the client TTL while no other master can be elected.
              const leader = await cluster.leaderIndex();
              if (leader < 0) break;
              const f = (leader + 1 + rng.nextInt(cluster.masters.length - 1)) % cluster.masters.length;
              mark(`nemesis: SIGKILL follower ${cluster.masters[f]!.id}, SIGSTOP leader ${cluster.masters[leader]!.id} past the client TTL`);
              count('long-pause-leader');
              await cluster.masters[f]!.proc.kill();
              cluster.masters[leader]!.proc.signal('SIGSTOP');
              await sleep(4_500 + rng.nextInt(2_000));
              cluster.masters[leader]!.proc.signal('SIGCONT');
              mark(`nemesis: SIGCONT leader ${cluster.masters[leader]!.id}`);
              await sleep(1_000 + rng.nextInt(2_000));
              await cluster.startMaster(f);
              mark(`nemesis: restarted master ${cluster.masters[f]!.id}`);
              break;
            }
            case 10: {
              // A storage node lost for good: past the client TTL its segments expire and the masters repair.
              if (cluster.storage.some((s) => s.proc.state !== 'up')) break;
              const s = rng.nextInt(cluster.storage.length);
              mark(`nemesis: SIGKILL storage node s${s + 1}, wait for repair`);
              count('kill-storage-repair');
              await cluster.killStorage(s);
              injectLosses(now());
              await sleep(4_000); // clientTtlMs of the campaign's masters
              const healed = await waitForRepair(30_000);
              count(healed ? 'repaired' : 'repair-timeout');
              mark(`nemesis: ${healed ? 'every key has 2 live replicas again' : 'repair not finished within 30 s'}`);
              await cluster.startStorage(s);
              mark(`nemesis: storage node s${s + 1} restarted as ${cluster.storage[s]!.clientId}`);
              break;
            }
          }
        } catch (e) {
          mark(`nemesis step failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    };

    const loops = Array.from({ length: workers }, (_, w) => worker(w));
    await nemesis();
    stop = true;
    await Promise.all(loops);

    // Heal everything, then read every key back once more (part of the history).
    cluster.heal();
    cluster.freeDisk();
    for (let i = 0; i < cluster.masters.length; i++) {
      const m = cluster.masters[i]!;
      if (m.proc.state === 'stopped') m.proc.signal('SIGCONT');
      if (m.proc.state === 'down') await cluster.startMaster(i);
    }
    for (let i = 0; i < cluster.storage.length; i++) if (cluster.storage[i]!.proc.state === 'down') await cluster.startStorage(i);
    await cluster.waitForLeader();
    const finalReads = new Map<string, string | null>();
    for (const key of keys) {
      for (let attempt = 0; attempt < 20; attempt++) {
        const call = now();
        try {
          const v = decodeValue(await clients[0]!.get(key), maxBytes);
          if (v.startsWith('CORRUPT')) wrong++;
          history.push({ clientId: 'final', op: 'get', key, input: { kind: 'get' }, output: { value: v }, call, return: now() });
          finalReads.set(key, v);
          break;
        } catch (e) {
          const code = e instanceof MooringError ? e.code : ErrorCode.INTERNAL;
          if (code === ErrorCode.OBJECT_NOT_FOUND || code === ErrorCode.OBJECT_NOT_READY) {
            history.push({ clientId: 'final', op: 'get', key, input: { kind: 'get' }, output: { value: null }, call, return: now() });
            finalReads.set(key, null);
            break;
          }
          await sleep(250);
        }
      }
    }

    // Lost: the final read says absent although an acknowledged put was followed by no removal or loss that
    // could have linearized after it.
    let lost = 0;
    for (const key of keys) {
      if (finalReads.get(key) !== null) continue;
      const ops = history.filter((o) => o.key === key);
      const lastAck = ops.filter((o) => o.input.kind === 'put' && o.output !== undefined && 'ok' in o.output && o.output.ok).sort((a, b) => b.return! - a.return!)[0];
      if (lastAck === undefined) continue;
      const explained = ops.some((o) => (o.input.kind === 'remove' || o.input.kind === 'lose') && (o.return === undefined || o.return > lastAck.call) && !(o.output !== undefined && 'ok' in o.output && !o.output.ok));
      if (!explained) lost++;
    }

    const check = checkLinearizability(history, storeModel);
    // Who expired a busy client's session, and what the masters logged about it (the masters' logs are removed with
    // a passing run): its lines and each master's leader changes and pause notes, the last few per master.
    if (expiredClients.size > 0) {
      for (const m of cluster.masters) {
        const file = path.join(cluster.root, `${m.id}.log`);
        if (!existsSync(file)) continue;
        const lines = readFileSync(file, 'utf8').split('\n').filter((l) => [...expiredClients].some((c) => l.includes(c)) || /leader changed|resumed after a pause|expiring silent clients/.test(l));
        for (const l of lines.slice(-maxExpiryLogLines)) log(`${m.id} log: ${l.slice(0, 400)}`);
      }
    }
    const result: CampaignResult = {
      seed,
      durationS: Math.round((Date.now() - started) / 1000),
      ops: history.filter((o) => o.input.kind !== 'lose').length,
      acked,
      unknown,
      failed,
      lost,
      wrong,
      linearizable: check.ok,
      inconclusiveKeys: check.inconclusiveKeys.length,
      faults,
      errors,
    };
    if (!check.ok && check.counterexample !== undefined) {
      const ce = check.counterexample;
      result.counterexample = `${ce.explanation.slice(0, 4000)}\n…\n${ce.operations.slice(-30).map((o) => storeModel.describeOperation!(o as Operation<StoreInput, StoreOutput>)).join('\n')}`;
    }
    if (!check.ok || lost > 0 || wrong > 0) {
      keep = true;
      const badKey = check.counterexample?.key;
      const keyOps = badKey === undefined ? [] : history.filter((o) => o.key === badKey).sort((a, b) => a.call - b.call);
      const report = {
        result,
        timeline,
        key: badKey,
        operations: keyOps.map((o) => (errorOf.has(o) ? { ...o, error: errorOf.get(o) } : o)),
        placements: Object.fromEntries(keyOps.filter((o) => o.input.kind === 'put').map((o) => [(o.input as { value: string }).value, placement.get((o.input as { value: string }).value) ?? null])),
        deadStorageClients: [...cluster.deadStorageClients],
      };
      writeFileSync(path.join(cluster.root, 'report.json'), JSON.stringify(report, null, 1));
      result.artifacts = cluster.root;
    }
    return result;
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    await cluster.close({ keep });
  }
}
