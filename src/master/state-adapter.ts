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

export function encodeMasterCommand(command: Command, timeMs: number): Uint8Array {
  return packr.pack({ t: timeMs, c: command }) as Uint8Array;
}

function decodeMasterCommand(data: Uint8Array): { timeMs: number; command: Command } | null {
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
    return this.state.appliedIndex;
  }

  async apply(commands: AppliedCommand[], noopThrough: number): Promise<unknown[]> {
    const results: Result[] = new Array(commands.length);
    const entries: ApplyEntry[] = [];
    const positions: number[] = [];
    for (let i = 0; i < commands.length; i++) {
      const c = commands[i]!;
      const decoded = decodeMasterCommand(c.data);
      if (decoded === null) {
        results[i] = { ok: false, error: { code: ErrorCode.INVALID_ARGUMENT, message: `log entry ${c.index} is not a master command` } };
        continue;
      }
      entries.push({ index: c.index, timeMs: decoded.timeMs, command: decoded.command });
      positions.push(i);
    }
    if (entries.length > 0) {
      const applied = await this.state.applyBatch(entries);
      assert(applied.length === entries.length, 'one result per applied entry');
      for (let j = 0; j < applied.length; j++) results[positions[j]!] = applied[j]!;
    }
    if (noopThrough > this.state.appliedIndex) await this.state.applyNoop(noopThrough);
    return results;
  }

  flush(): Promise<void> {
    return this.state.flush();
  }

  snapshot(): { index: number; chunks: AsyncIterable<Uint8Array> } {
    return { index: this.state.appliedIndex, chunks: this.state.createSnapshot() };
  }

  async restore(index: number, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await this.state.installSnapshot(chunks);
    assert(this.state.appliedIndex === index, `restored snapshot is at ${this.state.appliedIndex}, expected ${index}`);
  }
}
