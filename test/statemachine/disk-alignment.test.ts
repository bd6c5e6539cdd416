/**
 * DISK segments allocate in whole O_DIRECT blocks (diskAllocAlignmentBytes) whatever the configured alignment,
 * DRAM segments keep the configured one, and a store reloaded from disk rebuilds the same allocators.
 */
import { describe, expect, it } from 'vitest';
import { MasterState } from '../../src/statemachine/master-state.js';
import { diskAllocAlignmentBytes } from '../../src/statemachine/limits.js';
import { seg, tempDir } from './helpers.js';

describe('allocator alignment per segment type', () => {
  it('aligns DISK extents to O_DIRECT blocks, DRAM extents to the configured alignment, also after a reload', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let st = await MasterState.open(dir);
      let index = 0;
      const apply = async (command: object): Promise<any> => {
        const [r] = await st.applyBatch([{ index: ++index, timeMs: 1_000, command: command as never }]);
        if (!r!.ok) throw new Error(JSON.stringify(r!.error));
        return r!.value;
      };
      await apply({ type: 'MountSegment', clientId: 'c', segment: seg('mem', 1 << 20) });
      await apply({ type: 'MountSegment', clientId: 'c', segment: seg('disk', 1 << 20, { tier: 'DISK' }) });
      const dramOffsets: number[] = [];
      for (const [i, size] of [100, 5000, 77, 4097].entries()) {
        const d = await apply({ type: 'PutStart', clientId: 'c', key: `d${i}`, size, replicaNum: 1, tier: 'DISK' });
        expect(d.replicas[0].offset % diskAllocAlignmentBytes).toBe(0);
        const m = await apply({ type: 'PutStart', clientId: 'c', key: `m${i}`, size, replicaNum: 1 });
        dramOffsets.push(m.replicas[0].offset);
      }
      expect(dramOffsets.every((o) => o % 64 === 0)).toBe(true);
      expect(dramOffsets.some((o) => o % diskAllocAlignmentBytes !== 0)).toBe(true);
      const hash = st.stateHash();
      await st.flush();
      await st.close();
      st = await MasterState.open(dir);
      expect(st.stateHash()).toBe(hash);
      const next = await apply({ type: 'PutStart', clientId: 'c', key: 'd-after', size: 10, replicaNum: 1, tier: 'DISK' });
      expect(next.replicas[0].offset % diskAllocAlignmentBytes).toBe(0);
      await st.close();
    } finally {
      await cleanup();
    }
  });
});
