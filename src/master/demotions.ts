/**
 * Demotion tasks (tiering): instead of dropping an eviction candidate, the leader asks the client owning its first
 * memory replica to copy it to a DISK segment (the client runs OffloadStart → copy → OffloadEnd, every metadata
 * change through the log). Leader soft state: a task not done within demotionTimeoutMs falls back to dropping, and
 * a new leader starts with no tasks and plans again. Also used by a put that needs room (beforePut): it waits for
 * the demotions its candidates can take before anything is dropped.
 */
import type { BatchPutStart, Command, Evict, EvictItem, PutStart, UpsertStart } from '../statemachine/commands.js';
import type { LeaseTable } from '../statemachine/leases.js';
import { leaseClock } from '../raft/effects/system-clock.js';
import type { MasterState } from '../statemachine/master-state.js';
import type { ObjectRecord } from '../statemachine/objects.js';
import type { StateView } from '../statemachine/state-view.js';
import { evictableFor } from './admission.js';

/** A demotion task not finished within this long falls back to dropping the object. */
export const demotionTimeoutMs = 5_000;
/** A task is sent again in a later ping reply after this long (the reply may have been lost). */
export const demotionResendMs = 2_000;
export const maxPendingDemotions = 1_024;
export const maxTierTasksPerPing = 64;
/**
 * A put that needs room (eviction candidates attached) while a DISK tier can take them waits up to this long for
 * their demotion before anything is dropped (longer, up to demotionTimeoutMs, while one is mid-copy); then it
 * proceeds with what still has to go.
 */
export const putDemotionWaitMs = 1_500;
export const putDemotionPollMs = 25;

export interface DemotionDeps {
  /** Read at each call: the master opens its state after constructing this. */
  state(): MasterState;
  leases(): LeaseTable;
  isLeader(): boolean;
}

export class Demotions {
  private readonly tasks = new Map<string, { clientId: string; createdIndex: number; deadlineMs: number; sentAtMs: number }>();

  constructor(private readonly d: DemotionDeps) {}

  /** Turns eviction candidates into demotion tasks where a DISK segment can take them; returns what to drop now. */
  plan(evict: Evict, now: number): Evict | null {
    if (!this.d.isLeader()) {
      this.tasks.clear();
      return evict;
    }
    const st = this.view();
    for (const [key, t] of this.tasks) {
      const o = st.objects.get(key);
      if (o === undefined || o.createdIndex !== t.createdIndex || !o.replicas.some((r) => r.tier !== 'DISK')) this.tasks.delete(key);
    }
    const drop: EvictItem[] = [];
    for (const it of evict.items) {
      const t = this.tasks.get(it.key);
      if (t !== undefined) {
        if (t.deadlineMs > now) continue; // still demoting
        this.tasks.delete(it.key);
        drop.push(it); // timed out: fall back to dropping
        continue;
      }
      const o = st.objects.get(it.key);
      const owner = o === undefined ? undefined : this.owner(st, o);
      if (o !== undefined && owner !== undefined && this.tasks.size < maxPendingDemotions) {
        this.tasks.set(it.key, { clientId: owner, createdIndex: it.createdIndex, deadlineMs: now + demotionTimeoutMs, sentAtMs: 0 });
      } else {
        drop.push(it);
      }
    }
    return drop.length === 0 ? null : { type: 'Evict', items: drop };
  }

  /** The demotion tasks to hand `clientId` in its ping reply (each resent after demotionResendMs). */
  tasksFor(clientId: string, now: number): Array<{ kind: 'demote'; key: string }> {
    const out: Array<{ kind: 'demote'; key: string }> = [];
    for (const [key, t] of this.tasks) {
      if (t.clientId !== clientId || now - t.sentAtMs < demotionResendMs) continue;
      t.sentAtMs = now;
      out.push({ kind: 'demote', key });
      if (out.length >= maxTierTasksPerPing) break;
    }
    return out;
  }

  /**
   * Demotion instead of drops for a put that needs room: candidates a DISK segment can take become demotion tasks
   * (the same as the watermark's), and the put waits up to putDemotionWaitMs for the space they free. Whatever it
   * still needs then is dropped as before (the candidates are planned again from the current state).
   */
  async beforePut(command: Command): Promise<void> {
    if (command.type !== 'PutStart' && command.type !== 'UpsertStart' && command.type !== 'BatchPutStart') return;
    const put: PutStart | UpsertStart | BatchPutStart = command;
    const wanted = put.evictable;
    if (wanted === undefined || wanted.length === 0) return;
    const start = Date.now();
    const drop = this.plan({ type: 'Evict', items: wanted }, start);
    if (drop !== null && drop.items.length === wanted.length) return; // nothing demotable: drop as before
    const st = this.view();
    // A candidate mid-copy cannot be evicted either: past the soft wait, keep waiting while one is (up to the
    // demotion timeout), so the put does not end with NO_SPACE where it used to evict.
    const copying = (): boolean => wanted.some((it) => {
      const o = st.objects.get(it.key);
      if (o === undefined) return false;
      return o.offload !== null || (this.tasks.has(it.key) && o.replicas.some((r) => r.tier !== 'DISK'));
    });
    for (;;) {
      await new Promise((r) => setTimeout(r, putDemotionPollMs));
      const now = Date.now();
      const evictable = evictableFor(put, this.d.state(), this.d.leases(), leaseClock.now());
      const waited = now - start;
      if (evictable.length === 0 || waited >= demotionTimeoutMs || (waited >= putDemotionWaitMs && !copying()) || !this.d.isLeader()) {
        if (evictable.length > 0) put.evictable = evictable;
        else delete put.evictable;
        return;
      }
    }
  }

  /** The client to demote `o`: the owner of its first memory replica, when some DISK segment can take it. */
  private owner(st: StateView, o: ObjectRecord): string | undefined {
    const mem = o.replicas.find((r) => r.tier !== 'DISK');
    if (mem === undefined) return undefined;
    const owner = st.segments.get(mem.segmentId)?.rec.clientId;
    if (owner === undefined || !st.clients.has(owner)) return undefined;
    const used = new Set(o.replicas.map((r) => r.segmentId));
    for (const s of st.ordered) {
      if (s.rec.tier === 'DISK' && s.rec.status === 'OK' && !used.has(s.rec.id) && s.alloc.canFit(o.size)) return owner;
    }
    return undefined;
  }

  private view(): StateView {
    return this.d.state() as unknown as StateView;
  }
}
