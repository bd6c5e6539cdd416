// Bad input from the network never crashes the engine: random bytes and mutated request headers against the TCP
// data server, each followed by a real transfer that must still succeed.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Engine, type Segment } from '../../src/engine/index.js';

let owner: Engine;
let client: Engine;
let target: Segment;
let local: Segment;

beforeAll(() => {
  owner = new Engine({ onWarning: () => {} });
  client = new Engine({ onWarning: () => {}, server: false });
  target = owner.createSegment({ size: 1 << 20 });
  local = client.createSegment({ size: 1 << 20 });
});
afterAll(async () => {
  await client.close();
  await owner.close();
});

const magic = 0x524f4f4d;
function hello(): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(magic, 0);
  b.writeUInt16LE(1, 4);
  return b;
}
function header(op: number, segId: number, length: number, token: bigint, offset: bigint): Buffer {
  const b = Buffer.alloc(40);
  b.writeUInt32LE(magic, 0);
  b.writeUInt8(op, 4);
  b.writeUInt32LE(segId, 8);
  b.writeUInt32LE(length, 12);
  b.writeBigUInt64LE(token, 16);
  b.writeBigUInt64LE(offset, 24);
  b.writeBigUInt64LE(7n, 32);
  return b;
}

// Sends bytes, half-closes, and collects whatever the server answers until it closes (or a short grace period).
function exchange(bytes: Buffer): Promise<Buffer> {
  const [host, port] = owner.endpoint.split(':');
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect(Number(port), host!, () => s.end(bytes));
    const done = () => {
      s.destroy();
      resolve(Buffer.concat(chunks));
    };
    s.on('data', (d) => chunks.push(d));
    s.on('close', done);
    s.on('error', done);
    s.setTimeout(2000, done);
  });
}

async function stillServes(): Promise<void> {
  target.buffer.fill(0x42, 0, 4096);
  const [r] = await client.transfer(
    [{ op: 'read', local: { segment: local, offset: 0 }, remote: { segment: target.descriptor(), offset: 0 }, length: 4096 }],
    { protocol: 'tcp' },
  );
  expect(r?.status).toBe('completed');
  expect(local.buffer.subarray(0, 4096).every((x) => x === 0x42)).toBe(true);
}

describe('TCP data server under bad input', () => {
  it('survives random bytes, with or without a valid hello', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ minLength: 0, maxLength: 2048 }), async (withHello, junk) => {
        await exchange(Buffer.concat([withHello ? hello() : Buffer.alloc(0), Buffer.from(junk)]));
        await stillServes();
      }),
      { numRuns: 40 },
    );
  });

  it('refuses mutated requests (bad segment, token, offset, length, op) and keeps serving', async () => {
    const d = target.descriptor();
    const token = BigInt('0x' + d.token);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(0, 1, 2, 3, 255),
        fc.constantFrom(d.segmentId, d.segmentId + 1, 0, 0xffffffff),
        fc.constantFrom(0, 1, 4096, 1 << 20, (1 << 20) + 1, 0xffffffff),
        fc.constantFrom(token, token ^ 1n, 0n),
        fc.constantFrom(0n, 4096n, BigInt(d.size) - 1n, BigInt(d.size), 2n ** 64n - 1n, 2n ** 63n),
        fc.integer({ min: 0, max: 70_000 }),
        async (op, segId, length, tok, offset, payloadBytes) => {
          const reply = await exchange(Buffer.concat([hello(), header(op, segId, length, tok, offset), Buffer.alloc(payloadBytes)]));
          // Whatever came back starts with the hello reply; a response frame, if any, has a valid magic.
          if (reply.length >= 16) expect(reply.readUInt32LE(0)).toBe(magic);
          if (reply.length >= 40) {
            expect(reply.readUInt32LE(16)).toBe(magic);
            const status = reply.readInt32LE(20);
            const inRange = offset + BigInt(length) <= BigInt(d.size) && length > 0 && length <= 1 << 20;
            const valid = segId === d.segmentId && tok === token && inRange && (op === 0 || op === 1);
            if (!valid && op <= 1) expect(status).not.toBe(0);
          }
          await stillServes();
        },
      ),
      { numRuns: 60 },
    );
  });
});
