/**
 * Transport throughput on loopback: one-way peer frames (TCP and TLS), and client RPC calls (sequential and
 * pipelined). TLS material comes from the `openssl` CLI into a temp dir. Also the frame codec on a 64-key
 * batchGetReplicaList reply, plain against compact (replica-lists-wire.ts), in the same run. And the machine's floor
 * for a hop between two processes (lib/ping-pong.ts: plain node:net, pinned with taskset to different CPUs, then to
 * the same CPU): what each message of a Raft round costs here before any Mooring code runs.
 *   npm run bench:transport [-- --json] [-- --seconds N]
 */
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { RpcClient, RpcServer } from '../src/transport/rpc.js';
import { TcpPeerTransport } from '../src/transport/tcp-transport.js';
import { decodePayload, encodePayload } from '../src/transport/codec.js';
import { compactReplicaLists, expandReplicaLists } from '../src/master/replica-lists-wire.js';
import type { Result } from '../src/statemachine/commands.js';
import type { GetReplicaListValue } from '../src/statemachine/state-core.js';
import type { TlsConfig } from '../src/transport/net-util.js';

const json = process.argv.includes('--json');
const secondsArg = process.argv.indexOf('--seconds');
const secondsPerCase = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 2;
const frameDataBytes = 200;

function makeTls(): { cfg: TlsConfig; cleanup: () => void } {
  const dir = mkdtempSync(join(os.tmpdir(), 'mooring-bench-pki-'));
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=bench CA', '-keyout', 'ca.key', '-out', 'ca.crt']);
  writeFileSync(join(dir, 'leaf.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=leaf', '-keyout', 'leaf.key', '-out', 'leaf.csr']);
  run(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'leaf.ext', '-out', 'leaf.crt']);
  const cfg: TlsConfig = { cert: readFileSync(join(dir, 'leaf.crt')), key: readFileSync(join(dir, 'leaf.key')), ca: readFileSync(join(dir, 'ca.crt')), requireClientCert: true };
  return { cfg, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

interface Row {
  case: string;
  opsPerSec: number;
  mbPerSec: number;
  note: string;
}

async function peerCase(name: string, tls: TlsConfig | undefined): Promise<Row> {
  const mk = (id: string) => new TcpPeerTransport({ nodeId: id, clusterId: 'bench', listen: { host: '127.0.0.1', port: 0 }, peers: [], ...(tls ? { tls } : {}) });
  const a = mk('a');
  const b = mk('b');
  let received = 0;
  b.onFrame(() => {
    received++;
  });
  await a.start();
  await b.start();
  a.setPeer({ id: 'b', host: '127.0.0.1', port: b.port });
  // Inbound, a transport accepts only the peers it was told of (a stranger's handshake is refused).
  b.setPeer({ id: 'a', host: '127.0.0.1', port: a.port });
  const frame = { type: 'app', from: 'a', to: 'b', term: 1, entries: [{ index: 1, term: 1, type: 'normal', data: new Uint8Array(frameDataBytes) }] };
  // Warm up the connection.
  a.send('b', frame);
  while (received === 0) await new Promise((r) => setTimeout(r, 1));
  received = 0;
  let sent = 0;
  let refused = 0;
  const start = performance.now();
  const end = start + secondsPerCase * 1000;
  while (performance.now() < end) {
    // Offer frames in bursts, as a Raft leader's Ready does; yield so the socket can drain.
    for (let i = 0; i < 256; i++) {
      if (a.send('b', frame)) sent++;
      else refused++;
    }
    await new Promise((r) => setImmediate(r));
  }
  const elapsed = (performance.now() - start) / 1000;
  const got = received;
  await a.close();
  await b.close();
  return { case: name, opsPerSec: Math.round(got / elapsed), mbPerSec: Number(((got * frameDataBytes) / elapsed / 1e6).toFixed(1)), note: `${sent} queued, ${refused} refused (queue full)` };
}

async function rpcCase(name: string, concurrency: number): Promise<Row> {
  const server = new RpcServer({ clusterId: 'bench', nodeId: 's', listen: { host: '127.0.0.1', port: 0 } });
  server.handle('echo', (args) => args);
  await server.start();
  const client = new RpcClient({ host: '127.0.0.1', port: server.port, clusterId: 'bench' });
  await client.connect();
  const payload = { key: 'object-key-0001', data: new Uint8Array(frameDataBytes) };
  let calls = 0;
  const start = performance.now();
  const end = start + secondsPerCase * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      await client.call('echo', payload);
      calls++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  await client.close();
  await server.close();
  return { case: name, opsPerSec: Math.round(calls / elapsed), mbPerSec: Number(((calls * frameDataBytes) / elapsed / 1e6).toFixed(1)), note: `mean ${((elapsed * 1000 * concurrency) / calls).toFixed(3)} ms/call` };
}

/** Encode + decode of one 64-key reply (one replica each on four segments), as a master sends and a client reads it. */
function replyCodecCase(name: string, compact: boolean): Row {
  const keys = 64;
  const rs: Array<Result<GetReplicaListValue>> = Array.from({ length: keys }, (_, i) => ({
    ok: true,
    value: { replicas: [{ segmentId: `bench-seg-${i % 4}`, offset: i * 4096, length: 4096, address: 0x10000000 + i * 4096, endpoint: `127.0.0.1:3000${i % 4}`, protocol: 'tcp', tier: 'DRAM' }], leaseTtlMs: 10_000, size: 4096, status: 'COMPLETE' },
  }));
  const encode = (): Uint8Array => encodePayload({ id: 1, result: compact ? compactReplicaLists(rs) : rs });
  const decode = (b: Uint8Array): unknown => expandReplicaLists((decodePayload(b) as { result: unknown }).result, keys);
  const bytes = encode();
  const time = (fn: () => unknown): number => {
    let n = 0;
    const start = performance.now();
    const end = start + (secondsPerCase * 1000) / 2;
    while (performance.now() < end) for (let i = 0; i < 100; i++, n++) fn();
    return ((performance.now() - start) * 1000) / (n * keys); // µs per key
  };
  const enc = time(encode);
  const dec = time(() => decode(bytes));
  return { case: name, opsPerSec: Math.round(1e6 / (enc + dec)), mbPerSec: 0, note: `keys/s encoded+decoded; ${bytes.byteLength} bytes per reply, encode ${enc.toFixed(3)} µs/key, decode ${dec.toFixed(3)} µs/key` };
}

const pingPongScript = new URL('./lib/ping-pong.js', import.meta.url).pathname;

/** Round trips between two pinned processes (lib/ping-pong.ts); null where taskset or a second CPU is missing. */
async function pingPongCase(name: string, serverCpu: number, clientCpu: number): Promise<Row | null> {
  const roundTrips = Math.max(2_000, Math.round(secondsPerCase * 5_000));
  try {
    execFileSync('taskset', ['-c', String(Math.max(serverCpu, clientCpu)), 'true'], { stdio: 'ignore' });
  } catch {
    return null;
  }
  const server = spawn('taskset', ['-c', String(serverCpu), process.execPath, pingPongScript, 'server'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: server.stdout })[Symbol.asyncIterator]();
  const nextLine = async (): Promise<string> => {
    const r = await lines.next();
    if (r.done === true) throw new Error('bench:transport: the ping-pong echo process exited early');
    return r.value;
  };
  const port = Number(await nextLine());
  const out = execFileSync('taskset', ['-c', String(clientCpu), process.execPath, pingPongScript, 'client', String(port), String(roundTrips)], { encoding: 'utf8' });
  const client = JSON.parse(out) as { rttUs: number; cpuUsPerRoundTrip: number; warmUp: number };
  server.stdin.end();
  const { cpuUs } = JSON.parse(await nextLine()) as { cpuUs: number };
  // The echo side's CPU covers the client's warm-up round trips too.
  const serverUs = cpuUs / (roundTrips + client.warmUp);
  return {
    case: name,
    opsPerSec: Math.round(1e6 / client.rttUs),
    mbPerSec: 0,
    note: `round trips/s; ${client.rttUs.toFixed(1)} µs per round trip, CPU per round trip: client ${client.cpuUsPerRoundTrip.toFixed(1)} µs, echo ${serverUs.toFixed(1)} µs (CPUs ${clientCpu} and ${serverCpu})`,
  };
}

/** CPU per wakeup of a process that does nothing but wake every 25 ms (lib/ping-pong.ts timer). */
function timerCase(name: string): Row {
  const ms = Math.max(2_000, secondsPerCase * 1000);
  const r = JSON.parse(execFileSync(process.execPath, [pingPongScript, 'timer', String(ms)], { encoding: 'utf8' })) as { wakeups: number; cpuUsPerWakeup: number };
  return { case: name, opsPerSec: Math.round((r.wakeups * 1000) / ms), mbPerSec: 0, note: `wakeups/s; ${r.cpuUsPerWakeup.toFixed(1)} µs CPU per wakeup (its timer, nothing else: a Raft tick's floor)` };
}

const tls = makeTls();
const rows: Row[] = [];
try {
  rows.push(await peerCase('peer frames, TCP', undefined));
  rows.push(await peerCase('peer frames, mTLS', tls.cfg));
  rows.push(await rpcCase('RPC echo, 1 in flight', 1));
  rows.push(await rpcCase('RPC echo, 64 in flight', 64));
  rows.push(replyCodecCase('64-key batchGetReplicaList reply, plain', false));
  rows.push(replyCodecCase('64-key batchGetReplicaList reply, compact', true));
  // The floor under every cross-process hop: two processes on different CPUs, then sharing one.
  const across = os.cpus().length >= 2 ? await pingPongCase('two processes, ping-pong, different CPUs', 1, 0) : null;
  const same = await pingPongCase('two processes, ping-pong, same CPU', 0, 0);
  for (const r of [across, same]) if (r !== null) rows.push(r);
  rows.push(timerCase('idle process woken every 25 ms'));
  if (across === null && same === null) console.error('bench:transport: taskset (util-linux) not found: ping-pong cases skipped');
} finally {
  tls.cleanup();
}

const machine = { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version };
if (json) {
  console.log(JSON.stringify({ bench: 'transport', date: new Date().toISOString(), machine, frameDataBytes, secondsPerCase, rows }));
} else {
  console.log(`Transport on loopback (${frameDataBytes}-byte payloads, ${secondsPerCase} s per case) on ${machine.cpu}, ${machine.cores} cores`);
  console.table(rows);
}
const lines = [
  '',
  `## transport — ${new Date().toISOString().slice(0, 10)}`,
  `Machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}. Command: \`npm run bench:transport\`. ` +
    `${frameDataBytes}-byte payloads on 127.0.0.1, sender and receiver in one process (they share the cores), ${secondsPerCase} s per case.`,
  '',
  '| case | ops/s | payload MB/s | note |',
  '|---|---:|---:|---|',
  ...rows.map((r) => `| ${r.case} | ${r.opsPerSec} | ${r.mbPerSec} | ${r.note} |`),
  '',
];
appendFileSync(new URL('../../bench/RESULTS.md', import.meta.url), lines.join('\n'));
