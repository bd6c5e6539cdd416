/**
 * Joins the master state machine (which knows nothing of Raft) to RaftNode's RaftStateMachine contract.
 *
 * Log entries carry `{t, c}`: the leader's wall clock when it proposed (ms since epoch) and the command. Apply
 * reads time only from `t`, so every replica computes the same result; an entry that does not decode yields the
 * same INVALID_ARGUMENT result everywhere rather than stopping the replicas.
 */
import { Packr } from 'msgpackr';
import { ErrorCode, assert } from '../errors.js';
import type { AppliedCommand, RaftStateMachine } from '../raft/state-machine.js';
import type { Command, Result } from '../statemachine/commands.js';
import type { ApplyEntry } from '../statemachine/state-core.js';
import type { MasterState } from '../statemachine/master-state.js';

const packr = new Packr({ useRecords: false });

/**
 * Commands proposed together share one log entry, but the state machine wants a distinct, increasing index per
 * command (placement is seeded from it, objects remember it as createdIndex). Command k of the entry at log index
 * i gets i * indexSlotsPerEntry + k, and the entry's last command gets the last slot, so the state machine's
 * applied index maps back to the log: an entry counts as applied only once its last slot is.
 */
export const indexSlotsPerEntry = 4096;

export function encodeMasterCommand(command: Command, timeMs: number): Uint8Array {
  return packr.pack({ t: timeMs, c: command }) as Uint8Array;
}

export function decodeMasterCommand(data: Uint8Array): { timeMs: number; command: Command } | null {
  try {
    const v = packr.unpack(data) as { t?: unknown; c?: unknown };
    if (typeof v !== 'object' || v === null || typeof v.t !== 'number' || typeof v.c !== 'object' || v.c === null) return null;
    return { timeMs: v.t, command: v.c as Command };
  } catch {
    return null;
  }
}

export class MasterStateMachine implements RaftStateMachine {
  constructor(private readonly state: MasterState) {}

  get master(): MasterState {
    return this.state;
  }

  appliedIndex(): number {
    return logIndexOf(this.state.appliedIndex);
  }

  async apply(commands: AppliedCommand[], noopThrough: number): Promise<unknown[]> {
    const results: Result[] = new Array(commands.length);
    const entries: ApplyEntry[] = [];
    const positions: number[] = [];
    for (let i = 0; i < commands.length; i++) {
      const c = commands[i]!;
      const lastOfEntry = i === commands.length - 1 || commands[i + 1]!.index !== c.index;
      const slot = lastOfEntry ? indexSlotsPerEntry - 1 : (c.position ?? 0);
      assert(slot < indexSlotsPerEntry, () => `command position ${slot} exceeds the index slots of an entry`);
      const stateIndex = c.index * indexSlotsPerEntry + slot;
      const decoded = decodeMasterCommand(c.data);
      if (decoded === null) {
        results[i] = { ok: false, error: { code: ErrorCode.INVALID_ARGUMENT, message: `log entry ${c.index} is not a master command` } };
        continue;
      }
      entries.push({ index: stateIndex, timeMs: decoded.timeMs, command: decoded.command });
      positions.push(i);
    }
    if (entries.length > 0) {
      // Reply from memory: the entries are committed in the Raft log, which replays them after a crash from the
      // applied index the state store last wrote; the store writes go on behind, coalesced (see MasterState).
      const applied = await this.state.applyBatch(entries, { waitForWrite: false });
      assert(applied.length === entries.length, 'one result per applied entry');
      for (let j = 0; j < applied.length; j++) results[positions[j]!] = applied[j]!;
    }
    const noopStateIndex = noopThrough * indexSlotsPerEntry + indexSlotsPerEntry - 1;
    if (noopStateIndex > this.state.appliedIndex) await this.state.applyNoop(noopStateIndex, { waitForWrite: false });
    return results;
  }

  flush(): Promise<void> {
    return this.state.flush();
  }

  snapshot(): { index: number; chunks: AsyncIterable<Uint8Array> } {
    return { index: this.appliedIndex(), chunks: this.state.createSnapshot() };
  }

  onFailure(listener: (err: unknown) => void): void {
    this.state.onFailure(listener);
  }

  async restore(index: number, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await this.state.installSnapshot(chunks);
    assert(this.appliedIndex() === index, () => `restored snapshot is at ${this.appliedIndex()}, expected ${index}`);
  }
}

/** The last log entry fully reflected in a state whose applied index is `stateIndex`. */
export function logIndexOf(stateIndex: number): number {
  const entry = Math.floor(stateIndex / indexSlotsPerEntry);
  return stateIndex % indexSlotsPerEntry === indexSlotsPerEntry - 1 || stateIndex === 0 ? entry : entry - 1;
}
