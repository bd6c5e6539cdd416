/**
 * The apply pipeline: committed commands are applied in order on one promise chain while the Ready loop goes on
 * persisting and replicating the next entries (etcd's server does the same with its applier goroutine).
 * Membership changes are applied to the core at once, in log order; commands are handed over in chunks of at
 * most maxCommandsPerApply, never splitting an entry. Local snapshots (log compaction) run on this chain too.
 */
import { assert } from '../../errors.js';
import type { Entry, SnapshotMetadata } from '../core/types.js';
import type { AppliedCommand } from '../state-machine.js';
import type { NodeContext } from './context.js';
import { decodeCommandBatch, entryKindCommand, entryKindCommandBatch, entryKindPeerAddress } from './envelope.js';

/**
 * Commands per state-machine apply call. Applies are synchronous CPU work on the event loop; bounding them keeps
 * timers (heartbeats) and sockets served while a large backlog is applied.
 */
export const maxCommandsPerApply = 256;
/** Committed commands handed to the apply pipeline but not yet applied; past this the Ready loop waits. */
export const maxApplyLagCommands = 16_384;

export class Applier {
  /** Highest committed index the driver has processed (handed over or applied to the core). */
  applied: number;
  /** Highest index the state machine has applied. */
  smApplied: number;
  lastSnapshotIndex: number;
  private chain: Promise<void> = Promise.resolve();
  private lagCommands = 0;
  /** Highest index handed to the apply pipeline (entries at or below it are never handed over again). */
  private dispatchedThrough: number;

  constructor(private readonly ctx: NodeContext) {
    this.lastSnapshotIndex = ctx.storage.snapshot().metadata.index;
    this.smApplied = ctx.sm.appliedIndex();
    this.dispatchedThrough = this.smApplied;
    this.applied = this.lastSnapshotIndex;
  }

  get overloaded(): boolean {
    return this.lagCommands > maxApplyLagCommands;
  }

  /** Resolves once every apply handed over so far has finished. */
  idle(): Promise<void> {
    return this.chain;
  }

  /** After a snapshot install: the state machine holds everything up to `index`. */
  resetTo(index: number): void {
    this.lastSnapshotIndex = index;
    this.applied = index;
    this.smApplied = index;
    this.dispatchedThrough = index;
  }

  dispatchCommitted(entries: Entry[]): void {
    const { membership, peers, proposals } = this.ctx.parts;
    let commands: AppliedCommand[] = [];
    const handOver = (through: number): void => {
      if (commands.length === 0 && through <= this.dispatchedThrough) return;
      const batch = commands;
      commands = [];
      this.dispatchedThrough = Math.max(this.dispatchedThrough, through);
      this.enqueue(batch, through);
    };
    for (const e of entries) {
      if (e.type === 'confChange') {
        membership.applyConfEntry(e);
      } else if (e.data.byteLength > 0 && e.data[0] === entryKindCommand) {
        if (e.index > this.dispatchedThrough) commands.push({ index: e.index, data: e.data.subarray(1), position: 0 });
      } else if (e.data.byteLength > 0 && e.data[0] === entryKindCommandBatch) {
        if (e.index > this.dispatchedThrough) {
          const parts = decodeCommandBatch(e);
          for (let k = 0; k < parts.length; k++) commands.push({ index: e.index, data: parts[k]!, position: k });
        }
      } else if (e.data.byteLength > 0 && e.data[0] === entryKindPeerAddress) {
        peers.applyAddressEntry(e.data.subarray(1));
      }
      proposals.onCommitted(e);
      this.applied = e.index;
      // Chunk at entry boundaries only: an entry's commands are applied together (never half an entry).
      if (commands.length >= maxCommandsPerApply) handOver(e.index);
    }
    handOver(this.applied);
  }

  private enqueue(batch: AppliedCommand[], through: number): void {
    const ctx = this.ctx;
    this.lagCommands += batch.length;
    this.chain = this.chain.then(async () => {
      if (ctx.fatalError !== null) return;
      const results = await ctx.sm.apply(batch, through);
      assert(results.length === batch.length, 'state machine returned one result per command');
      this.lagCommands -= batch.length;
      this.smApplied = Math.max(this.smApplied, through);
      for (let i = 0; i < batch.length; i++) ctx.parts.proposals.onApplied(batch[i]!, results[i]);
      ctx.parts.reads.serve(this.smApplied);
      ctx.emit('applied', this.smApplied);
    }).catch((err) => ctx.crash(err));
  }

  /** Runs `fn` on the apply pipeline once every earlier apply finished (state machine at dispatchedThrough). */
  onChain<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(() => {}, (err) => this.ctx.crash(err));
    return run;
  }

  /** Flushes the state machine and compacts the log up to what it applied (keeping snapshotKeepEntries). */
  async takeLocalSnapshot(): Promise<void> {
    const ctx = this.ctx;
    await this.chain;
    const index = this.smApplied;
    if (index <= this.lastSnapshotIndex) return;
    // The state machine must be durable at `index` before the log forgets the entries that rebuild it.
    await ctx.sm.flush();
    const meta: SnapshotMetadata = { index, term: ctx.storage.term(index), confState: ctx.parts.membership.confStateAt(index) };
    const compactTo = Math.max(ctx.storage.firstIndex() - 1, index - ctx.settings.snapshotKeepEntries);
    await ctx.storage.compact(Math.min(compactTo, index), meta);
    this.lastSnapshotIndex = index;
    ctx.parts.membership.trimHistory(index);
    ctx.log.info({ index, compactedTo: compactTo }, 'local snapshot; log compacted');
    ctx.emit('snapshot', index, 'taken');
  }
}
