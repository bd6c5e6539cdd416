/**
 * A socket (TCP or TLS) carrying frames. Decoding errors close THIS connection only; nothing thrown here can
 * escape into the process. Frames that arrive before a handler is set are queued (bounded by the handshake, which
 * reads exactly one frame before installing the handler).
 */
import type { Socket } from 'node:net';
import { ErrorCode, MooringError } from '../errors.js';
import { FrameDecoder } from './codec.js';

/** How long a closing connection may take to flush its last frame before it is destroyed. */
export const endGraceMs = 1000;
/** Frames a peer may send ahead of the handshake's completion before it is cut off. */
export const maxPendingFrames = 1024;

export class FramedSocket {
  readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private handler: ((frame: unknown) => void) | null = null;
  private pending: unknown[] = [];
  private waiter: { resolve: (f: unknown) => void; reject: (e: Error) => void } | null = null;
  private closeHandlers: Array<(err: Error | null) => void> = [];
  private closedWith: Error | null | undefined = undefined;
  private outgoing: Uint8Array[] = [];
  private outgoingBytes = 0;
  private flushScheduled = false;
  /** Frames sent in the current event-loop turn (since the last flush). */
  private turnFrames = 0;
  /** The last turn sent more than one frame: this connection is busy, so its first frame waits for the flush too. */
  private deferFirst = false;
  /** When set, reading stops while the socket pushes back on our writes (a client that does not read its replies). */
  pauseReadsOnBackpressure = false;

  constructor(socket: Socket, maxFrameBytes: number) {
    this.socket = socket;
    this.decoder = new FrameDecoder(maxFrameBytes);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.finish(err));
    socket.on('close', () => this.finish(null));
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Resolves with the next frame, or rejects (TIMEOUT / the close reason). Used by the handshake. */
  readOne(timeoutMs: number): Promise<unknown> {
    if (this.pending.length > 0) return Promise.resolve(this.pending.shift());
    if (this.closedWith !== undefined) {
      return Promise.reject(closeError(this.closedWith));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new MooringError(ErrorCode.TIMEOUT, `no frame within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Installs the frame handler; frames queued so far are delivered first, in order. */
  setHandler(handler: (frame: unknown) => void): void {
    this.handler = handler;
    const queued = this.pending;
    this.pending = [];
    for (const f of queued) {
      if (this.closed) return;
      handler(f);
    }
  }

  onClose(cb: (err: Error | null) => void): void {
    if (this.closedWith !== undefined) cb(this.closedWith);
    else this.closeHandlers.push(cb);
  }

  /** Writes bytes; returns the socket's backpressure signal (false = wait for 'drain'). */
  write(bytes: Uint8Array): boolean {
    if (this.closed || this.socket.destroyed) return false;
    return this.socket.write(bytes);
  }

  /**
   * Queues bytes to go out with everything else queued in this tick: one socket write per event-loop turn,
   * however many frames (pipelined RPC replies and requests).
   */
  send(bytes: Uint8Array): void {
    if (this.closed) return;
    this.turnFrames++;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
      if (!this.deferFirst) {
        // An idle connection's first frame of a turn goes out at once (no added latency for a lone call); the rest
        // of the turn's frames wait for the flush and share one write. On a busy connection (the last turn had
        // more than one) the first waits too: one write per turn instead of two (socket writes were ~20% of a
        // loaded master's CPU).
        this.writeOut(bytes);
        return;
      }
    }
    this.outgoing.push(bytes);
    this.outgoingBytes += bytes.byteLength;
  }

  private flush(): void {
    this.flushScheduled = false;
    this.deferFirst = this.turnFrames > 1;
    this.turnFrames = 0;
    if (this.closed || this.outgoing.length === 0) return;
    const chunk = this.outgoing.length === 1 ? this.outgoing[0]! : Buffer.concat(this.outgoing, this.outgoingBytes);
    this.outgoing = [];
    this.outgoingBytes = 0;
    this.writeOut(chunk);
  }

  private writeOut(chunk: Uint8Array): void {
    if (!this.write(chunk) && this.pauseReadsOnBackpressure && !this.socket.isPaused()) {
      this.socket.pause();
      this.socket.once('drain', () => this.socket.resume());
    }
  }

  /** Sends a last frame (best effort), then ends the connection. */
  endWith(bytes: Uint8Array | null, reason: Error | null): void {
    if (this.closed) return;
    // Frames this turn queued for its flush go first (the flush does nothing once the socket is closed).
    if (this.outgoing.length > 0 && !this.socket.destroyed) this.socket.write(Buffer.concat(this.outgoing, this.outgoingBytes));
    this.outgoing = [];
    this.outgoingBytes = 0;
    if (bytes !== null && !this.socket.destroyed) this.socket.end(bytes);
    else this.socket.end();
    // A peer that never reads must not hold the socket open.
    const t = setTimeout(() => this.socket.destroy(), endGraceMs);
    t.unref();
    this.finish(reason, false);
  }

  destroy(reason: Error | null = null): void {
    this.socket.destroy();
    this.finish(reason);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let frames: unknown[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    for (const f of frames) {
      if (this.closed) return;
      if (this.waiter !== null) {
        const w = this.waiter;
        this.waiter = null;
        w.resolve(f);
      } else if (this.handler !== null) {
        this.handler(f);
      } else if (this.pending.length >= maxPendingFrames) {
        this.destroy(new MooringError(ErrorCode.QUEUE_FULL, 'too many frames before the handshake completed'));
        return;
      } else {
        this.pending.push(f);
      }
    }
  }

  private finish(err: Error | null, destroySocket = true): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = err;
    if (destroySocket && !this.socket.destroyed) this.socket.destroy();
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(closeError(err));
    }
    const cbs = this.closeHandlers;
    this.closeHandlers = [];
    for (const cb of cbs) cb(err);
  }
}

/**
 * Why a read could not complete. A connection that closed or reset is UNAVAILABLE (the peer went away: retry
 * elsewhere or later), the same code a call gets when its established connection drops; a protocol error keeps
 * its own code.
 */
function closeError(err: Error | null): MooringError {
  if (err instanceof MooringError) return err;
  return new MooringError(ErrorCode.UNAVAILABLE, err === null ? 'connection closed' : `connection lost: ${err.message}`, err === null ? {} : { cause: err });
}
