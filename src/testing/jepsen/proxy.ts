/**
 * A fault-injecting TCP proxy for one directed link (e.g. master A → master B's raft port). Modes:
 *   pass  — forward both ways;
 *   delay — forward after `delayMs` (order kept per direction);
 *   drop  — accept and swallow everything (a black hole: the sender sees no error, only silence);
 *   cut   — close every connection and refuse new ones (the sender sees resets).
 * Switching to drop/cut affects open connections at once, like a real partition.
 */
import net from 'node:net';

export type ProxyMode = 'pass' | 'delay' | 'drop' | 'cut';

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
}

export class FaultProxy {
  readonly label: string;
  private readonly target: { host: string; port: number };
  private server: net.Server | null = null;
  private readonly pairs = new Set<Pair>();
  private _mode: ProxyMode = 'pass';
  delayMs = 0;
  port = 0;

  constructor(label: string, target: { host: string; port: number }) {
    this.label = label;
    this.target = target;
  }

  get mode(): ProxyMode {
    return this._mode;
  }

  async start(port = 0): Promise<number> {
    const server = net.createServer((client) => this.onConnection(client));
    server.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  setMode(mode: ProxyMode, delayMs = 0): void {
    this._mode = mode;
    this.delayMs = delayMs;
    if (mode === 'cut') {
      for (const p of this.pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      this.pairs.clear();
    }
  }

  private onConnection(client: net.Socket): void {
    client.on('error', () => {});
    if (this._mode === 'cut') {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    upstream.on('error', () => {});
    const pair: Pair = { client, upstream };
    this.pairs.add(pair);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('close', close);
    upstream.on('close', close);
    this.forward(client, upstream);
    this.forward(upstream, client);
  }

  private forward(from: net.Socket, to: net.Socket): void {
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      const mode = this._mode;
      if (mode === 'drop' || mode === 'cut') return;
      if (mode === 'delay' && this.delayMs > 0) {
        const ms = this.delayMs;
        chain = chain.then(() => new Promise<void>((r) => setTimeout(r, ms))).then(() => {
          if (!to.destroyed && this._mode !== 'drop' && this._mode !== 'cut') to.write(chunk);
        });
        return;
      }
      chain = chain.then(() => {
        if (!to.destroyed) to.write(chunk);
      });
    });
  }

  async close(): Promise<void> {
    this.setMode('cut');
    const s = this.server;
    this.server = null;
    if (s !== null) await new Promise<void>((r) => s.close(() => r()));
  }
}
