/**
 * Connection budgets and bounded rejection logging, on real sockets (127.0.0.1 and 127.0.0.2).
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RejectLog } from '../../src/transport/reject-log.js';
import { TcpPeerTransport } from '../../src/transport/tcp-transport.js';
import { CaptureLogger, Inbox, waitFor } from './helpers.js';

const open: Array<{ close(): unknown }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

function connectFrom(localAddress: string, port: number): Promise<net.Socket> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    open.push({ close: () => s.destroy() });
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('close', () => resolve(s));
  });
}

describe('RejectLog', () => {
  it('a flood of rejections writes a bounded number of lines and counts every one', () => {
    const logger = new CaptureLogger();
    const counts = new Map<string, number>();
    const log = new RejectLog(logger, 'peer', (port, reason) => counts.set(`${port}/${reason}`, (counts.get(`${port}/${reason}`) ?? 0) + 1), 5, 60_000);
    for (let i = 0; i < 10_000; i++) log.reject(i % 2 === 0 ? 'bad_frame' : 'unauthorized', { i }, 'rejected');
    log.flush();
    expect(counts.get('peer/bad_frame')).toBe(5_000);
    expect(counts.get('peer/unauthorized')).toBe(5_000);
    // 5 lines per reason, plus one summary line per reason with the count.
    expect(logger.lines.length).toBe(12);
    expect(logger.lines.filter((l) => (l.obj as { rejected?: number }).rejected === 5_000)).toHaveLength(2);
  });
});

describe('connection budgets on the peer port', () => {
  it('strangers holding every handshake slot (and over their per-address limit) cannot keep a member out', async () => {
    const logger = new CaptureLogger();
    const b = new TcpPeerTransport({ nodeId: 'b', clusterId: 'c', listen: { host: '127.0.0.1', port: 0 }, peers: [], token: 't', maxInboundConnections: 20, maxConnectionsPerAddress: 15, handshakeTimeoutMs: 60_000, logger });
    open.push(b);
    const inbox = new Inbox();
    b.onFrame(inbox.handler);
    await b.start();
    // Two stranger addresses, 15 silent connections each: at most 10 stay in their handshake (20 - 10 reserved);
    // each newer one displaces the oldest.
    const strangers = [...(await Promise.all(Array.from({ length: 15 }, () => connectFrom('127.0.0.2', b.port)))), ...(await Promise.all(Array.from({ length: 15 }, () => connectFrom('127.0.0.3', b.port))))];
    await waitFor(() => strangers.filter((s) => !s.destroyed && s.readyState === 'open').length <= 10, 'over-budget strangers closed');
    await waitFor(() => logger.lines.some((l) => l.obj.reason === 'handshake_evicted'), 'handshake_evicted logged');
    // A member (another address) still gets in: its connection displaces the oldest silent stranger.
    const a = new TcpPeerTransport({ nodeId: 'a', clusterId: 'c', listen: { host: '127.0.0.1', port: 0 }, peers: [], token: 't' });
    open.push(a);
    await a.start();
    a.setPeer({ id: 'b', host: '127.0.0.1', port: b.port });
    b.setPeer({ id: 'a', host: '127.0.0.1', port: a.port });
    a.send('b', { hello: 'member' });
    await waitFor(() => inbox.from('a').length === 1, 'member frame delivered');
  });

  it('over maxConnectionsPerAddress, connections from one address are closed at once', async () => {
    const b = new TcpPeerTransport({ nodeId: 'b', clusterId: 'c', listen: { host: '127.0.0.1', port: 0 }, peers: [], token: 't', maxConnectionsPerAddress: 3, handshakeTimeoutMs: 60_000 });
    open.push(b);
    await b.start();
    const socks = await Promise.all(Array.from({ length: 8 }, () => connectFrom('127.0.0.4', b.port)));
    await waitFor(() => socks.filter((s) => s.readyState === 'open' && !s.destroyed).length === 3, 'only 3 kept');
    await new Promise((r) => setTimeout(r, 200));
    expect(b.inboundConnections).toBe(3);
  });
});
