/**
 * The production client's retry policy in the full-node simulator: a ClientEnv (src/client/leader-client.ts) on the
 * scheduler's virtual time whose connections reach the simulated masters, so a LeaderPool and callWithRetry — the
 * code MasterClient and StoreClient use — drive the workload's writes (workload.ts). Each request runs on its
 * master's own clock (held while that master is paused, dropped if it crashes: the client times out) and goes
 * through the RPC surface's steps for a write: the leader gate (a follower that knows no live leader parks the
 * request, as production does, until one is elected or it leads itself), then duplicate reply, admission and the
 * proposal (SimLeaseNode.write, sim-leases.ts).
 * Client ↔ master links take `clientLinkMs` each way and are otherwise reliable; faults reach the client through the
 * masters (crashes, pauses, partitions among them).
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { ClientConnection, ClientEnv } from '../../client/leader-client.js';
import { okResult, type Result } from '../../statemachine/commands.js';
import type { ClientCommand } from '../../master/rpc-methods.js';
import type { SeededRng } from '../../util/rng.js';
import type { SimScheduler } from './scheduler.js';
import type { SimMasterHost } from './sim-master.js';

/** One way, client to master or back (virtual ms). */
export const clientLinkMs = 1;

/** The endpoint the simulated client knows a master by. */
export function simEndpoint(id: string): string {
  return `${id}:1`;
}

/** The write methods the simulated masters serve; the arguments are the command itself (with clientId and seq). */
const simWriteMethods = new Set(['remove', 'putStart', 'putEnd', 'batchPutStart', 'batchPutEnd']);

/** A ping as the RPC surface serves it on `host`: the leader gate, then the leader's answer (client-expiry.ts). */
async function servePing(host: SimMasterHost, args: Record<string, unknown>): Promise<Result> {
  const lease = host.lease;
  const expiry = host.expiry;
  if (lease === null || expiry === null) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'master is starting');
  await lease.gate.leaderOrPark(typeof args.avoidLeader === 'string' ? args.avoidLeader : null);
  // A crash while parked ends this incarnation (its expiry with it): no answer from a dead process.
  if (host.expiry !== expiry) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'master restarted');
  return okResult(expiry.ping(String(args.clientId)));
}

/** A write as the RPC surface serves it on `host`: gate (park or NOT_LEADER), then admission and the proposal. */
async function serveWrite(host: SimMasterHost, args: Record<string, unknown>): Promise<Result> {
  const lease = host.lease;
  if (lease === null) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'master is starting');
  const avoid = typeof args.avoidLeader === 'string' ? args.avoidLeader : null;
  await lease.gate.leaderOrPark(avoid);
  const { avoidLeader: _a, sealRefusal, ...command } = args;
  return lease.write(command as unknown as ClientCommand & { seq: number }, sealRefusal === true);
}

/**
 * A client's clock, timers and randomness on the scheduler's virtual time (seeded), with connections from `connect`:
 * the simulated masters here, scripted ones in test/client/retry-property.test.ts.
 */
export function virtualClientEnv(sched: SimScheduler, rng: SeededRng, connect: (endpoint: string) => ClientConnection): ClientEnv {
  return {
    now: () => sched.now,
    sleep: (ms) => new Promise((resolve) => sched.after(ms, resolve)),
    race: <T>(promises: ReadonlyArray<Promise<T>> | Promise<T>, ms: number) => new Promise<T | null>((resolve, reject) => {
      let done = false;
      sched.after(ms, () => { if (!done) { done = true; resolve(null); } });
      for (const p of promises instanceof Promise ? [promises] : promises) {
        p.then((v) => { if (!done) { done = true; resolve(v); } }, (e: unknown) => { if (!done) { done = true; reject(e); } });
      }
    }),
    random: () => rng.nextFloat(),
    connect,
    close: () => {},
  };
}

export function simClientEnv(sched: SimScheduler, rng: SeededRng, hosts: readonly SimMasterHost[]): ClientEnv {
  const byEndpoint = new Map(hosts.map((h) => [simEndpoint(h.id), h]));
  return virtualClientEnv(sched, rng, (endpoint): ClientConnection => {
    const host = byEndpoint.get(endpoint);
    let connected = false;
    return {
      get connected() { return connected; },
      call: <T>(method: string, args?: unknown, opts: { timeoutMs?: number } = {}) => new Promise<T>((resolve, reject) => {
        let done = false;
        const finish = (fn: () => void): void => sched.after(clientLinkMs, () => { if (!done) { done = true; fn(); } });
        sched.after(opts.timeoutMs ?? 1_000, () => { if (!done) { done = true; reject(new MooringError(ErrorCode.TIMEOUT, `request to ${endpoint} timed out`)); } });
        if (host === undefined || !host.up) {
          // Nothing listens: refused before the request left.
          finish(() => reject(new MooringError(ErrorCode.UNAVAILABLE, `cannot connect to ${endpoint}`)));
          return;
        }
        connected = true;
        if (!simWriteMethods.has(method) && method !== 'ping') {
          finish(() => reject(new MooringError(ErrorCode.INVALID_ARGUMENT, `the simulated master does not serve ${method}`)));
          return;
        }
        // As on the wire: each attempt carries its own copy (admission adds leader-only fields to the command).
        const request = structuredClone(args) as Record<string, unknown>;
        // Delivered on the master's clock: held while it is paused, never run if it crashes first.
        sched.after(clientLinkMs, () => host.clock.schedule(0, () => {
          if (!host.up) return;
          // The answer leaves only from the incarnation that took the request, and not while it is paused.
          let outcome: () => void = () => {};
          const send = host.clock.guard(() => finish(outcome));
          (method === 'ping' ? servePing(host, request) : serveWrite(host, request)).then(
            (r) => { outcome = () => (r.ok ? resolve(r.value as T) : reject(MooringError.fromWire(r.error))); send(); },
            (e: unknown) => { outcome = () => reject(e instanceof MooringError ? e : new MooringError(ErrorCode.INTERNAL, String(e))); send(); },
          );
        }));
      }),
      close: async () => {},
    };
  });
}
