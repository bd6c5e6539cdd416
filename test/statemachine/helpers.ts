import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateCore } from '../../src/statemachine/state-core.js';
import type { Command, Result, SegmentSpec } from '../../src/statemachine/commands.js';
import type { StateOptions } from '../../src/statemachine/state-core.js';

/** Applies commands with increasing indexes and a clock the test controls. */
export class Driver {
  index = 0;
  now = 1_000_000;
  constructor(readonly core: StateCore = new StateCore()) {}
  static with(options: Partial<StateOptions>): Driver {
    return new Driver(new StateCore(options));
  }
  apply(command: Command): Result<any> {
    return this.core.apply({ index: ++this.index, timeMs: this.now, command });
  }
  ok(command: Command): any {
    const r = this.apply(command);
    if (!r.ok) throw new Error(`${command.type} failed: ${r.error.code} ${r.error.message}`);
    return r.value;
  }
  code(command: Command): string | null {
    const r = this.apply(command);
    return r.ok ? null : r.error.code;
  }
}

export function seg(id: string, size: number, extra: Partial<SegmentSpec> = {}): SegmentSpec {
  return { id, name: id, base: 0, size, protocol: 'tcp', endpoint: `host-${id}:1`, ...extra };
}

export async function tempDir(prefix = 'mooring-sm-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return out;
}

export async function* replay(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield c;
}
