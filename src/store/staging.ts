/**
 * A bounded pool of staging slots in one local DRAM segment: the engine moves bytes between a local segment and
 * a remote one, so every put/get borrows a slot for the duration of its transfer. Waiters queue in FIFO order;
 * the pool size bounds the memory and the concurrency of one client.
 */
import type { Segment } from '../engine/index.js';
import { ErrorCode, MooringError } from '../errors.js';

export interface Slot {
  readonly index: number;
  readonly offset: number;
  readonly bytes: number;
  /** A view of the slot's first `length` bytes. */
  view(length: number): Buffer;
}

export class StagingPool {
  readonly segment: Segment;
  readonly slotBytes: number;
  readonly slots: number;
  private readonly free: number[] = [];
  private readonly waiters: Array<(s: number) => void> = [];
  private closed = false;

  constructor(segment: Segment, slotBytes: number, slots: number) {
    this.segment = segment;
    this.slotBytes = slotBytes;
    this.slots = slots;
    for (let i = slots - 1; i >= 0; i--) this.free.push(i);
  }

  get available(): number {
    return this.free.length;
  }

  async acquire(): Promise<Slot> {
    if (this.closed) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'staging pool closed');
    const i = this.free.pop() ?? (await new Promise<number>((resolve) => this.waiters.push(resolve)));
    if (this.closed) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'staging pool closed');
    const offset = i * this.slotBytes;
    const seg = this.segment;
    const bytes = this.slotBytes;
    return { index: i, offset, bytes, view: (length: number) => seg.view(offset, length) };
  }

  release(slot: Slot): void {
    const w = this.waiters.shift();
    if (w !== undefined) w(slot.index);
    else this.free.push(slot.index);
  }

  async with<T>(fn: (slot: Slot) => Promise<T>): Promise<T> {
    const slot = await this.acquire();
    try {
      return await fn(slot);
    } finally {
      this.release(slot);
    }
  }

  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w(-1);
  }
}
