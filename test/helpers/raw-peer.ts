/**
 * A raw peer-port connection for hostile-input tests: real socket to 127.0.0.1, a real handshake (any node id,
 * optional token), then whatever frames the test writes. Replies are decoded as they arrive.
 */
import net from 'node:net';
import { FrameDecoder, encodeFrame } from '../../src/transport/codec.js';
import { makeHello } from '../../src/transport/handshake.js';

export class RawPeer {
  readonly frames: unknown[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder(64 * 1024 * 1024);

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      try {
        this.frames.push(...this.decoder.push(d));
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
  }

  /** Connects and sends a Hello; resolves once the node answered (its Hello, or a refusal and close). */
  static async connect(port: number, clusterId: string, nodeId: string, token?: string, timeoutMs = 5_000): Promise<RawPeer> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    const p = new RawPeer(socket);
    socket.write(encodeFrame(makeHello(clusterId, nodeId, 'peer', token)));
    const deadline = Date.now() + timeoutMs;
    while (p.frames.length === 0 && !p.closed && Date.now() < deadline) await sleep(10);
    return p;
  }

  /** Wraps an already connected socket (the caller wrote its own hello). */
  static wrap(socket: net.Socket): RawPeer {
    return new RawPeer(socket);
  }

  /** The node's answer to our Hello: its Hello, or `{error: {code}}`. */
  get reply(): Record<string, unknown> | undefined {
    return this.frames[0] as Record<string, unknown> | undefined;
  }

  /** Writes frames; resolves once the socket accepted them (drain), or at once if it is gone. */
  async send(...values: unknown[]): Promise<void> {
    for (const v of values) {
      if (this.closed) return;
      if (!this.socket.write(encodeFrame(v, 64 * 1024 * 1024))) {
        await new Promise<void>((r) => {
          const done = (): void => {
            this.socket.off('drain', done);
            this.socket.off('close', done);
            r();
          };
          this.socket.on('drain', done);
          this.socket.on('close', done);
        });
      }
    }
  }

  /** Resolves true once the node closed the connection, false after timeoutMs. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await sleep(10);
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
