import net from 'node:net';
import { encodeFrame } from '../../src/transport/codec.js';
import { makeHello } from '../../src/transport/handshake.js';
import type { LoggerLike } from '../../src/transport/logger.js';
import type { PeerId } from '../../src/transport/types.js';

/** Polls `cond` until true; fails after `limitMs` (a liveness bound, not a timing assertion). */
export async function waitFor(cond: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export class Inbox {
  frames: Array<{ from: PeerId; frame: unknown }> = [];
  readonly handler = (from: PeerId, frame: unknown): void => {
    this.frames.push({ from, frame });
  };
  from(id: PeerId): unknown[] {
    return this.frames.filter((f) => f.from === id).map((f) => f.frame);
  }
}

/** Captures log lines so tests can check that refusals are logged with a reason. */
export class CaptureLogger implements LoggerLike {
  lines: Array<{ level: string; obj: Record<string, unknown>; msg: string | undefined }> = [];
  debug(obj: object, msg?: string): void {
    this.lines.push({ level: 'debug', obj: obj as Record<string, unknown>, msg });
  }
  info(obj: object, msg?: string): void {
    this.lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg });
  }
  warn(obj: object, msg?: string): void {
    this.lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg });
  }
  error(obj: object, msg?: string): void {
    this.lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg });
  }
  codes(): unknown[] {
    return this.lines.map((l) => l.obj.code).filter((c) => c !== undefined);
  }
}

/**
 * A raw socket: writes `chunks` (with `gapMs` between them), collects whatever comes back until the server closes
 * it, or until `holdMs` after the last write when holdMs > 0.
 */
export function rawExchange(port: number, chunks: Uint8Array[], holdMs = 0, gapMs = 0): Promise<{ received: Buffer; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const got: Buffer[] = [];
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      s.destroy();
      resolve({ received: Buffer.concat(got), closedByServer });
    };
    s.on('data', (d) => got.push(d));
    s.on('error', () => finish(true));
    s.on('close', () => finish(true));
    s.on('connect', async () => {
      for (const c of chunks) {
        if (done) return;
        s.write(c);
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      }
      if (holdMs > 0) setTimeout(() => finish(false), holdMs).unref();
    });
  });
}

export function helloFrame(clusterId: string, nodeId: string, role: 'peer' | 'client' = 'peer', token?: string, version?: number): Buffer {
  const h = makeHello(clusterId, nodeId, role, token) as unknown as Record<string, unknown>;
  if (version !== undefined) h.protocolVersion = version;
  return encodeFrame(h);
}
