/**
 * An incremental 64-bit hash (two FNV-1a lanes) of every event a simulation delivers: the same seed and schedule
 * must give the same hash, which is how determinism is asserted and how a replay is known to be exact.
 */
import type { Message } from '../raft/core/types.js';

export class TraceHasher {
  private h1 = 0x811c9dc5;
  private h2 = 0x01000193 ^ 0x5bd1e995;
  events = 0;

  add(s: string): void {
    let a = this.h1;
    let b = this.h2;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 15);
    }
    // Separator, so "ab"+"c" differs from "a"+"bc".
    this.h1 = Math.imul(a ^ 0xff, 0x01000193) >>> 0;
    this.h2 = Math.imul(b ^ 0xfe, 0x01000193) >>> 0;
    this.events++;
  }

  addMessage(now: number, m: Message): void {
    this.add(
      `${now} ${m.from}>${m.to} ${m.type} ${m.term} ${m.index ?? ''} ${m.logTerm ?? ''} ${m.commit ?? ''} ` +
        `${m.reject ? 1 : 0} ${m.entries?.length ?? 0} ${m.snapshot?.metadata.index ?? ''}`,
    );
  }

  digest(): string {
    return this.h1.toString(16).padStart(8, '0') + this.h2.toString(16).padStart(8, '0');
  }
}
