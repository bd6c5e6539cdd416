// A real second process as the remote peer: shm and tcp across processes, a peer killed mid-transfer and a
// paused peer (SIGSTOP) must end in per-request errors, never a crash or a hang. The peer runs the compiled
// dist/ (run `npm run build:ts` first; `npm test` does).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Engine, type Segment, type SegmentDescriptor } from '../../src/engine/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const distEngine = path.join(root, 'dist', 'src', 'engine', 'index.js');
const peerBytes = 32 * 1024 * 1024;

// The peer: owns one segment filled with a known pattern, prints its descriptor, answers `sha <off> <len>`.
const peerSource = `
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
const { Engine } = await import(process.env.MOORING_TEST_ENGINE);
const e = new Engine({ onWarning() {} });
const s = e.createSegment({ size: Number(process.env.MOORING_TEST_BYTES), name: 'peer' });
for (let i = 0; i < s.size; i += 4) s.buffer.writeUInt32LE((i * 2654435761) >>> 0, i);
console.log(JSON.stringify(s.descriptor()));
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, a, b] = line.split(' ');
  if (cmd === 'sha') console.log(createHash('sha256').update(s.buffer.subarray(Number(a), Number(a) + Number(b))).digest('hex'));
  if (cmd === 'exit') { await e.close(); process.exit(0); }
}
`;

interface Peer {
  proc: ChildProcessWithoutNullStreams;
  desc: SegmentDescriptor;
  ask(line: string): Promise<string>;
}

const peers: Peer[] = [];

async function startPeer(): Promise<Peer> {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', peerSource], {
    env: { ...process.env, MOORING_TEST_ENGINE: distEngine, MOORING_TEST_BYTES: String(peerBytes) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done) throw new Error('peer exited before printing its descriptor');
  const peer: Peer = {
    proc,
    desc: JSON.parse(first.value) as SegmentDescriptor,
    async ask(line) {
      proc.stdin.write(line + '\n');
      const r = await lines.next();
      if (r.done) throw new Error('peer exited');
      return r.value;
    },
  };
  peers.push(peer);
  return peer;
}

function killed(p: Peer): Promise<void> {
  return new Promise((resolve) => {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null) resolve();
    else p.proc.once('exit', () => resolve());
  });
}

// SIGSTOP, then wait until the kernel reports the peer stopped (state T): signal delivery is asynchronous.
async function stopped(p: Peer): Promise<void> {
  p.proc.kill('SIGSTOP');
  const stateOf = () => readFileSync(`/proc/${p.proc.pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
  while (stateOf() !== 'T') await new Promise((r) => setTimeout(r, 10));
}

let e: Engine;
let local: Segment;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
function peerPattern(): Buffer {
  const b = Buffer.alloc(peerBytes);
  for (let i = 0; i < peerBytes; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
}

beforeAll(() => {
  if (!existsSync(distEngine)) throw new Error(`${distEngine} is missing: run \`npm run build:ts\` first`);
  e = new Engine({ onWarning: () => {} });
  local = e.createSegment({ size: peerBytes });
});
afterAll(async () => {
  for (const p of peers) p.proc.kill('SIGKILL');
  await Promise.all(peers.map(killed));
  await e.close();
});

describe('a peer in another process', () => {
  for (const protocol of ['shm', 'tcp'] as const) {
    it(`moves bytes intact over ${protocol} (reads of its pattern, writes checked by the peer)`, async () => {
      const p = await startPeer();
      expect(p.desc.shm?.pid).toBe(p.proc.pid);
      const mirror = peerPattern(); // what the peer's segment holds, updated with every write
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 3 * 1024 * 1024 }),
          fc.double({ min: 0, max: 1, noNaN: true }),
          fc.double({ min: 0, max: 1, noNaN: true }),
          async (length, lp, rp) => {
            const lo = Math.floor(lp * (peerBytes - length));
            const ro = Math.floor(rp * (peerBytes - length));
            const [r] = await e.transfer(
              [{ op: 'read', local: { segment: local, offset: lo }, remote: { segment: p.desc, offset: ro }, length }],
              { protocol },
            );
            expect(r).toEqual({ status: 'completed', protocol });
            expect(sha(local.buffer.subarray(lo, lo + length))).toBe(sha(mirror.subarray(ro, ro + length)));
            local.buffer.subarray(lo, lo + length).fill(length & 0xff);
            const [w] = await e.transfer(
              [{ op: 'write', local: { segment: local, offset: lo }, remote: { segment: p.desc, offset: ro }, length }],
              { protocol },
            );
            expect(w?.status).toBe('completed');
            expect(await p.ask(`sha ${ro} ${length}`)).toBe(sha(local.buffer.subarray(lo, lo + length)));
            mirror.fill(length & 0xff, ro, ro + length);
          },
        ),
        { numRuns: 8 },
      );
      expect(await p.ask(`sha 0 ${peerBytes}`)).toBe(sha(mirror));
    });
  }

  it('a peer killed mid-transfer fails the requests (no crash, no hang) and the engine keeps working', async () => {
    const p = await startPeer();
    const reqs = Array.from({ length: 16 }, (_, i) => ({
      op: 'read' as const,
      local: { segment: local, offset: (i % 8) * 4 * 1024 * 1024 },
      remote: { segment: p.desc, offset: 0 },
      length: 4 * 1024 * 1024,
    }));
    // Warm the connections. Then pause the peer (so the batches cannot finish whatever the scheduler does),
    // put several large batches in flight on those connections, and kill it.
    expect((await e.transfer(reqs.slice(0, 1), { protocol: 'tcp' }))[0]?.status).toBe('completed');
    await stopped(p);
    const inflight = [1, 2, 3, 4].map(() => e.transfer(reqs, { protocol: 'tcp', timeoutMs: 20_000 }));
    await new Promise((r) => setTimeout(r, 100)); // let workers send their requests (not required for the outcome)
    p.proc.kill('SIGKILL');
    const all = (await Promise.all(inflight)).flat();
    expect(all.every((r) => ['completed', 'failed', 'timeout'].includes(r.status))).toBe(true);
    expect(all.every((r) => r.status === 'failed' && r.code === 'TRANSFER_FAILED')).toBe(true);
    await killed(p);
    // Afterwards: new requests to the dead peer fail quickly, over tcp and shm.
    const [t] = await e.transfer(reqs.slice(0, 1), { protocol: 'tcp' });
    expect(t?.status).toBe('failed');
    const [s] = await e.transfer(reqs.slice(0, 1), { protocol: 'shm' });
    expect(s).toMatchObject({ status: 'failed', code: 'SEGMENT_NOT_FOUND' });
    // ...and a live peer still works.
    const q = await startPeer();
    const [ok] = await e.transfer([{ ...reqs[0]!, remote: { segment: q.desc, offset: 0 } }], { protocol: 'tcp' });
    expect(ok?.status).toBe('completed');
  });

  it('a stalled tcp peer does not hold up memory copies (separate worker pools)', async () => {
    const p = await startPeer();
    const big = { op: 'read' as const, local: { segment: local, offset: 0 }, remote: { segment: p.desc, offset: 0 }, length: 16 * 1024 * 1024 };
    expect((await e.transfer([big], { protocol: 'tcp' }))[0]?.status).toBe('completed');
    await stopped(p);
    // Enough requests to occupy every network worker until the peer goes away.
    const stuck = e.transfer([big, big, big, big, big, big, big, big], { protocol: 'tcp', timeoutMs: 60_000 });
    const other = e.createSegment({ size: 1 << 20 });
    other.buffer.fill(7);
    const [copy] = await e.transfer([
      { op: 'read', local: { segment: local, offset: 0 }, remote: { segment: other.descriptor(), offset: 0 }, length: 1 << 20 },
    ], { protocol: 'shm' });
    expect(copy?.status).toBe('completed');
    expect(local.buffer.subarray(0, 1 << 20).every((x) => x === 7)).toBe(true);
    p.proc.kill('SIGKILL');
    const rs = await stuck;
    expect(rs.every((r) => r.status === 'failed')).toBe(true);
    other.close();
  });

  it('a paused peer (SIGSTOP) makes requests time out instead of hanging', async () => {
    const p = await startPeer();
    const req = { op: 'read' as const, local: { segment: local, offset: 0 }, remote: { segment: p.desc, offset: 0 }, length: 8 * 1024 * 1024 };
    expect((await e.transfer([req], { protocol: 'tcp' }))[0]?.status).toBe('completed');
    await stopped(p);
    try {
      const rs = await e.transfer([req, req], { protocol: 'tcp', timeoutMs: 1500 });
      expect(rs.map((r) => r.status)).toEqual(['timeout', 'timeout']);
      expect(rs[0]?.code).toBe('TIMEOUT');
    } finally {
      p.proc.kill('SIGCONT');
    }
    // Once it runs again, fresh connections work.
    expect((await e.transfer([req], { protocol: 'tcp' }))[0]?.status).toBe('completed');
  });
});
