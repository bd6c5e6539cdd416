/**
 * The real retry policy (callWithRetry over a LeaderPool) against scripted masters on virtual time: every seed draws
 * how each attempt of one write is answered — refused by a read lease, NOT_LEADER with or without a hint, applied
 * and answered (or the answer lost), parked at a follower and applied or refused later, silent, BUSY, a proposal
 * timeout or a stepped-down leader whose entry may still commit, a state machine refusal, a refused connection —
 * and records when (if ever) the write applied. After the call settles the schedule runs on until every attempt has
 * finished, and the client's answer must be honest about the ground truth:
 *
 * - success → the write applied (before the answer);
 * - a state machine answer (sealed for the write's seq) → the write applied with that answer;
 * - a sealed lease refusal (SealRefusal: masters of state version 4 record it for the seq when an attempt asks with
 *   `sealRefusal`) → the seq was closed with that refusal: the write never applied, not even later;
 * - any other definite error → the write never applied, not even later (an attempt still parked somewhere);
 * - OUTCOME_UNKNOWN / `definite: false` → anything.
 *
 * A jepsen run found the third rule broken (a lease refusal while a hedge was parked). A failing seed is printed;
 * replay it with MOORING_RETRY_SEED=<seed>.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { LeaderPool, callWithRetry, type ClientConnection, type ClientEnv, type RetryPolicy } from '../../src/client/leader-client.js';
import { SimScheduler } from '../../src/testing/fullnode/scheduler.js';
import { virtualClientEnv } from '../../src/testing/fullnode/sim-client.js';
import { SeededRng } from '../../src/util/rng.js';

const endpoints = ['e0:1', 'e1:1', 'e2:1'];
/** Virtual time the schedule runs after the call started: far past any deadline and park. */
const runForMs = 60_000;
/** Seeds per run (MOORING_RETRY_SEEDS for a longer soak; 3,000 take about a second). */
const seeds = Number(process.env.MOORING_RETRY_SEEDS ?? 3_000);

/** What closed the write's seq: applied ('ok'), a state machine refusal, or a sealed lease refusal (never applied). */
type Applied = { at: number; sealed: 'ok' | 'notFound' | 'leaseRefused' };

/** One scripted cluster: the write's ground truth and how each arriving attempt is answered. */
class ScriptedMasters {
  applied: Applied | null = null;
  attempts = 0;
  readonly trace: string[] = [];

  /** Whether these masters seal lease refusals when asked (state version 4), or ignore the request (older ones). */
  readonly canSeal: boolean;

  constructor(private readonly sched: SimScheduler, private readonly rng: SeededRng) {
    this.canSeal = rng.nextInt(3) !== 0;
  }

  /** Applies the write now unless it already did (exactly once: later attempts get its first answer). */
  private apply(sealed: Applied['sealed']): void {
    if (this.applied === null) this.applied = { at: this.sched.now, sealed };
  }

  private answer(): unknown {
    if (this.applied!.sealed === 'notFound') throw new MooringError(ErrorCode.OBJECT_NOT_FOUND, 'no such object');
    if (this.applied!.sealed === 'leaseRefused') throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, 'leased', { sealed: true });
    return 'applied';
  }

  private after(ms: number): Promise<void> {
    return new Promise((resolve) => this.sched.after(ms, resolve));
  }

  private readonly never = (): Promise<never> => new Promise(() => {});

  private hint(from: string): { leaderHint?: string; leaderTerm?: number } {
    if (this.rng.nextInt(3) === 0) return {};
    const to = endpoints[this.rng.nextInt(endpoints.length)]!;
    return to === from ? {} : { leaderHint: `m@${to}`, leaderTerm: 1 + this.rng.nextInt(4) };
  }

  /** One attempt arriving at `endpoint`; resolves or rejects as that master would (never, for a lost answer). */
  async serve(endpoint: string, args: { sealRefusal?: boolean }): Promise<unknown> {
    this.attempts++;
    const r = this.rng;
    const kind = r.nextInt(11);
    this.trace.push(`t=${this.sched.now} ${endpoint} kind ${kind}${args.sealRefusal === true ? ' seal' : ''}`);
    switch (kind) {
      case 0: { // a read lease refuses it (unless it already applied: the server finds the first answer)
        await this.after(r.nextInt(300));
        if (this.applied !== null) return this.answer();
        if (args.sealRefusal === true && this.canSeal) {
          // SealRefusal proposed and applied: the seq is closed with the refusal; its answer may still be lost.
          await this.after(r.nextInt(100));
          this.apply('leaseRefused');
          if (r.nextInt(5) === 0) return this.never();
          return this.answer();
        }
        throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, 'leased');
      }
      case 1: // not the leader, at once or a little later: never proposed here
        await this.after(r.nextInt(50));
        throw new MooringError(ErrorCode.NOT_LEADER, 'not the leader', this.hint(endpoint));
      case 2: { // proposed, applied, answered, or the answer lost
        await this.after(r.nextInt(400));
        this.apply('ok');
        if (r.nextInt(5) === 0) return this.never();
        await this.after(r.nextInt(200));
        return this.answer();
      }
      case 3: { // parked at a follower that becomes leader: proposed then
        await this.after(100 + r.nextInt(1_400));
        this.apply('ok');
        return this.answer();
      }
      case 4: // parked, then NOT_LEADER (never proposed)
        await this.after(100 + r.nextInt(1_400));
        throw new MooringError(ErrorCode.NOT_LEADER, 'no live leader is known yet', this.hint(endpoint));
      case 5: // silent for good: a dead or black-holed master
        return this.never();
      case 6: // saturated leader: refused before proposing
        await this.after(r.nextInt(30));
        throw new MooringError(ErrorCode.BUSY, 'leader saturated', { retryAfterMs: 5 + r.nextInt(200) });
      case 7: { // proposal timed out; the entry may still commit
        await this.after(r.nextInt(1_000));
        const later = r.nextInt(2) === 0 ? r.nextInt(3_000) : -1;
        if (later >= 0) this.sched.after(later, () => this.apply('ok'));
        throw new MooringError(ErrorCode.TIMEOUT, 'proposal not applied in time');
      }
      case 8: { // the leader stepped down with it in flight; the new leader may commit the entry
        await this.after(r.nextInt(300));
        const later = r.nextInt(2) === 0 ? r.nextInt(500) : -1;
        if (later >= 0) this.sched.after(later, () => this.apply('ok'));
        throw new MooringError(ErrorCode.NOT_LEADER, 'stopped leading', { definite: false });
      }
      case 9: { // the state machine refuses it: that answer is sealed for the seq
        await this.after(r.nextInt(300));
        this.apply('notFound');
        return this.answer();
      }
      default: // nothing listens
        throw new MooringError(ErrorCode.UNAVAILABLE, `cannot connect to ${endpoint}`);
    }
  }
}

/** The pool's surroundings on the scheduler's virtual time, with the scripted masters behind every connection. */
function simEnv(sched: SimScheduler, rng: SeededRng, masters: ScriptedMasters): ClientEnv {
  return virtualClientEnv(sched, rng, (endpoint): ClientConnection => {
    let connected = false;
    return {
      get connected() { return connected; },
      call: <T>(_method: string, args?: unknown, opts: { timeoutMs?: number } = {}) => new Promise<T>((resolve, reject) => {
        let done = false;
        sched.after(opts.timeoutMs ?? 1_000, () => { if (!done) { done = true; reject(new MooringError(ErrorCode.TIMEOUT, `request to ${endpoint} timed out`)); } });
        masters.serve(endpoint, (args ?? {}) as { sealRefusal?: boolean }).then(
          (v) => { connected = true; if (!done) { done = true; resolve(v as T); } },
          (e: unknown) => {
            if (!(e instanceof MooringError && /^cannot connect/.test(e.message))) connected = true;
            if (!done) { done = true; reject(e); }
          },
        );
      }),
      close: async () => {},
    };
  });
}

/** Sealed answers of the state machine: definite, and the write applied with them. */
const sealedCodes = new Set<string>([ErrorCode.OBJECT_NOT_FOUND]);

/** How many calls ended in a sealed refusal, and in OUTCOME_UNKNOWN after a lease refusal (coverage). */
const tally = { sealed: 0, unknownAfterRefusal: 0 };

async function runSeed(seed: number): Promise<string | null> {
  const sched = new SimScheduler();
  const rng = new SeededRng(seed);
  const masters = new ScriptedMasters(sched, rng);
  const retry: RetryPolicy = rng.nextInt(4) === 0 ? { hedgeAfterMs: 0 } : {};
  const pool = new LeaderPool({ endpoints, clusterId: 'c', nodeId: 'client', env: simEnv(sched, rng, masters) });
  let outcome: { ok: true; at: number } | { ok: false; at: number; err: MooringError } | null = null;
  void callWithRetry(pool, 'remove', { key: 'k' }, { write: true, avoidLeaderArg: true, retry }).then(
    () => { outcome = { ok: true, at: sched.now }; },
    (err: unknown) => { outcome = { ok: false, at: sched.now, err: err as MooringError }; },
  );
  await sched.runUntil(runForMs);
  const o = outcome as typeof outcome;
  const truth = masters.applied;
  const where = `seed ${seed} (${masters.attempts} attempts; ${masters.trace.join('; ')}); truth ${JSON.stringify(truth)}`;
  if (o === null) return `the call never settled: ${where}`;
  if (o.at > 5_000 + 50) return `the call outlived its 5 s deadline (${o.at} ms): ${where}`;
  if (o.ok) return truth !== null && truth.sealed === 'ok' && truth.at <= o.at ? null : `success, but the write did not apply first: ${where}`;
  const e = o.err;
  if (!(e instanceof MooringError)) return `not a MooringError: ${String(e)}: ${where}`;
  if (e.sealed) tally.sealed++;
  if (e.code === ErrorCode.OUTCOME_UNKNOWN && (e.cause as MooringError | undefined)?.code === ErrorCode.OBJECT_HAS_LEASE) tally.unknownAfterRefusal++;
  if (!e.definite) return null;
  if (sealedCodes.has(e.code)) return truth?.sealed === 'notFound' ? null : `definite ${e.code} without that sealed answer: ${where}`;
  if (e.sealed) return truth?.sealed === 'leaseRefused' && truth.at <= o.at ? null : `a sealed ${e.code} the masters did not record: ${where}`;
  return truth === null || truth.sealed === 'leaseRefused' ? null : `definite ${e.code}: ${e.message}, but the write applied at ${truth.at} ms (answer at ${o.at} ms): ${where}`;
}

describe('callWithRetry under scripted masters (virtual time)', () => {
  it(`a write's answer never claims more than happened, over ${seeds} seeds`, async () => {
    const only = process.env.MOORING_RETRY_SEED;
    const list = only !== undefined ? [Number(only)] : Array.from({ length: seeds }, (_, i) => i + 1);
    const failures: string[] = [];
    for (const seed of list) {
      const f = await runSeed(seed);
      if (f !== null) failures.push(f);
    }
    if (failures.length > 0) console.log(`failing seeds (replay: MOORING_RETRY_SEED=<seed>):\n${failures.slice(0, 5).join('\n')}`);
    expect(failures.map((f) => f.slice(0, f.indexOf(' ('))), failures[0]).toEqual([]);
    // The seal path ran: calls ended in sealed refusals (masters that seal), and lease refusals still left some
    // unknown (masters that cannot, or a seal whose answer was lost).
    if (only === undefined && seeds >= 1_000) {
      expect(tally.sealed).toBeGreaterThan(0);
      expect(tally.unknownAfterRefusal).toBeGreaterThan(0);
    }
  }, 300_000);
});
