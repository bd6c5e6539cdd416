/**
 * Bounded logging of rejected network input. Every rejection is counted (per port and reason, for the
 * `mooring_rejected_frames_total` metric); only the first few per reason and interval become log lines, and the
 * rest are summed into one line per reason when the interval ends. A flood of bad frames therefore writes a
 * bounded number of lines (at most linesPerReason + 1 per reason per interval), not one per frame.
 */
import type { LoggerLike } from './logger.js';

/** Log lines written per (port, reason) in one interval before the rest are only counted. */
export const rejectLogLinesPerReason = 5;
/** Length of one counting interval. */
export const rejectLogIntervalMs = 10_000;

export type RejectPort = 'peer' | 'rpc' | 'http';
export type RejectCounter = (port: RejectPort, reason: string) => void;

export class RejectLog {
  private readonly seen = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly logger: LoggerLike,
    private readonly port: RejectPort,
    private readonly count: RejectCounter = () => {},
    private readonly linesPerReason = rejectLogLinesPerReason,
    private readonly intervalMs = rejectLogIntervalMs,
  ) {}

  /** Counts one rejection; logs it (warn) unless this reason already used its lines in this interval. */
  reject(reason: string, fields: object, msg: string): void {
    this.count(this.port, reason);
    const n = (this.seen.get(reason) ?? 0) + 1;
    this.seen.set(reason, n);
    if (n <= this.linesPerReason) this.logger.warn({ port: this.port, reason, ...fields }, msg);
    if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Writes one summary line per reason that went over its budget, and starts a new interval. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const [reason, n] of this.seen) {
      if (n > this.linesPerReason) {
        this.logger.warn({ port: this.port, reason, rejected: n, logged: this.linesPerReason, intervalMs: this.intervalMs }, 'rejected input (further lines suppressed)');
      }
    }
    this.seen.clear();
  }

  close(): void {
    this.flush();
  }
}

/** A metric label for a rejection: the error's code, lower-cased (MooringError codes and errno names: a bounded set). */
export function reasonOf(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.length <= 64 ? code.toLowerCase() : 'socket_error';
}

/**
 * A logger whose warn lines are bounded like RejectLog's (per message text and interval), for components such as
 * the Raft node that log one warning per bad frame from a peer. Other levels pass through.
 * `counted` maps the messages that report rejected input to their metric reason; only those are counted.
 */
export function boundedWarnings<L extends LoggerLike>(logger: L, port: RejectPort, counted: Record<string, string> = {}, count?: RejectCounter): L {
  const rejects = new RejectLog(logger, port, (p, msg) => {
    const reason = counted[msg];
    if (reason !== undefined) count?.(p, reason);
  });
  return new Proxy(logger, {
    get(target, prop, receiver) {
      if (prop === 'warn') return (obj: object, msg?: string) => rejects.reject(msg ?? 'warning', obj, msg ?? 'warning');
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
