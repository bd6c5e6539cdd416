// bench/engine: the native data path against the physical limits of this machine, in one run.
//   shm copy GB/s   vs a native memcpy loop (same machine, same run)
//   TCP GB/s        vs iperf3 on loopback        (skipped with a hint when iperf3 is absent)
//   NVMe write/read vs fio, O_DIRECT + io_uring  (skipped with a hint when fio is absent)
// Usage: npm run bench:engine [-- --json] [--quick] [--dir <path for the disk files>] [--no-record]
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine, measureMemcpyGBps, type Segment, type TierRequest, type TransferRequest } from '../src/engine/index.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const quick = args.includes('--quick');
const record = !args.includes('--no-record');
const dirArg = args.indexOf('--dir');
const baseDir = dirArg >= 0 && args[dirArg + 1] ? args[dirArg + 1]! : os.tmpdir();

const MiB = 1024 * 1024;
const segmentBytes = (quick ? 128 : 256) * MiB;
const requestBytes = 4 * MiB;
const diskFileBytes = (quick ? 512 : 1024) * MiB;
const iperfSeconds = quick ? 2 : 4;
const passes = quick ? 2 : 4;
// The machine is shared: ours and the limits are measured in interleaved rounds and each reports its best
// round, so a burst of someone else's load does not decide the ratio.
const trials = quick ? 2 : 4;
const targetRatio = 0.8;

const log = (m: string) => {
  if (!json) console.error(m);
};

interface Row {
  path: string;
  mooringGBps: number;
  limitGBps: number | null;
  ratio: number | null;
  limit: string;
  note?: string;
}

function gbps(bytes: number, ns: bigint): number {
  return bytes / Number(ns);
}

function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function requestsCovering(local: Segment, remote: ReturnType<Segment['descriptor']>, op: 'read' | 'write'): TransferRequest[] {
  const reqs: TransferRequest[] = [];
  for (let off = 0; off < segmentBytes; off += requestBytes) {
    reqs.push({ op, local: { segment: local, offset: off }, remote: { segment: remote, offset: off }, length: requestBytes });
  }
  return reqs;
}

// Warm-up: page faults in both mappings, TCP connections.
async function e2eWarm(e: Engine, reqs: TransferRequest[], protocol: 'shm' | 'tcp'): Promise<void> {
  await e.transferOrThrow(reqs, { protocol });
}

async function timeTransfers(e: Engine, reqs: TransferRequest[], protocol: 'shm' | 'tcp'): Promise<number> {
  const t0 = process.hrtime.bigint();
  // Two batches in flight, like a client with pipelined puts.
  for (let i = 0; i < passes; i += 2) {
    await Promise.all([e.transferOrThrow(reqs, { protocol }), e.transferOrThrow(reqs, { protocol })]);
  }
  return gbps(passes * segmentBytes, process.hrtime.bigint() - t0);
}

async function iperf3GBps(): Promise<number | null> {
  if (!which('iperf3')) return null;
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = spawn('iperf3', ['-s', '-1', '-p', String(port)], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  try {
    const r = spawnSync('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(iperfSeconds), '-J'], { encoding: 'utf8' });
    if (r.status !== 0) return null;
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
    return j.end.sum_received.bits_per_second / 8e9;
  } finally {
    server.kill();
  }
}

function fioGBps(file: string, rw: 'write' | 'read'): number | null {
  if (!which('fio')) return null;
  const r = spawnSync(
    'fio',
    [
      `--name=mooring-${rw}`, `--filename=${file}`, '--direct=1', '--ioengine=io_uring', `--rw=${rw}`, '--bs=1M',
      '--iodepth=32', `--size=${diskFileBytes}`, '--output-format=json',
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) return null;
  const j = JSON.parse(r.stdout) as { jobs: { read: { bw_bytes: number }; write: { bw_bytes: number } }[] };
  return j.jobs[0]![rw].bw_bytes / 1e9;
}

function row(p: string, mooring: number, limit: number | null, source: string, note?: string): Row {
  const r: Row = { path: p, mooringGBps: mooring, limitGBps: limit, ratio: limit ? mooring / limit : null, limit: source };
  if (note !== undefined) r.note = note;
  return r;
}

async function main(): Promise<void> {
  const loadAtStart = os.loadavg()[0]!;
  const rows: Row[] = [];
  const hints: string[] = [];
  const a = new Engine({ onWarning: () => {} });
  const b = new Engine({ onWarning: () => {} });
  const la = a.createSegment({ size: segmentBytes, name: 'bench-local' });
  const rb = b.createSegment({ size: segmentBytes, name: 'bench-remote' });
  la.buffer.fill(0x5a);
  rb.buffer.fill(0xa5);
  const desc = rb.descriptor();

  // Interleaved rounds: each round measures a limit and then ours back to back, so both see the same load;
  // the reported figure of each is its best round.
  const top = new Map<string, number>();
  const keep = (k: string, v: number | null) => {
    if (v !== null) top.set(k, Math.max(top.get(k) ?? 0, v));
  };
  const haveIperf = which('iperf3');
  const haveFio = which('fio');
  if (!haveIperf) hints.push('iperf3 not found: `apt-get install iperf3` to measure the TCP loopback limit');
  if (!haveFio) hints.push('fio not found: `apt-get install fio` to measure the O_DIRECT io_uring limit');
  const shmW = requestsCovering(la, desc, 'write');
  const shmR = requestsCovering(la, desc, 'read');
  measureMemcpyGBps(64 * MiB, 2);
  await e2eWarm(a, shmW, 'shm');
  await e2eWarm(a, shmW, 'tcp');
  for (let round = 0; round < trials; round++) {
    log(`round ${round + 1}/${trials}: memcpy, shm ...`);
    keep('memcpy', measureMemcpyGBps(64 * MiB, quick ? 8 : 16));
    keep('shm write', await timeTransfers(a, shmW, 'shm'));
    keep('shm read', await timeTransfers(a, shmR, 'shm'));
    log(`round ${round + 1}/${trials}: iperf3, tcp ...`);
    if (haveIperf) keep('iperf3', await iperf3GBps());
    keep('tcp write', await timeTransfers(a, shmW, 'tcp'));
    keep('tcp read', await timeTransfers(a, shmR, 'tcp'));
  }
  rows.push(row('shm write', top.get('shm write')!, top.get('memcpy')!, 'memcpy (1 thread)'));
  rows.push(row('shm read', top.get('shm read')!, top.get('memcpy')!, 'memcpy (1 thread)'));
  rows.push(row('tcp write', top.get('tcp write')!, top.get('iperf3') ?? null, 'iperf3 loopback'));
  rows.push(row('tcp read', top.get('tcp read')!, top.get('iperf3') ?? null, 'iperf3 loopback'));

  const dir = mkdtempSync(path.join(baseDir, 'mooring-bench-'));
  let direct = true;
  try {
    const disk = a.createDiskSegment({ path: path.join(dir, 'tier.dat'), size: diskFileBytes });
    direct = disk.direct;
    const tier = async (op: 'offload' | 'promote') => {
      const reqs: TierRequest[] = [];
      for (let off = 0; off < diskFileBytes; off += requestBytes) {
        reqs.push({ dram: { segment: la, offset: off % segmentBytes }, disk: { segment: disk, offset: off }, length: requestBytes });
      }
      const t0 = process.hrtime.bigint();
      const rs = await (op === 'offload' ? a.offload(reqs) : a.promote(reqs));
      const ns = process.hrtime.bigint() - t0;
      if (rs.some((r) => r.status !== 'completed')) throw new Error(`${op} failed: ${JSON.stringify(rs.find((r) => r.status !== 'completed'))}`);
      return gbps(diskFileBytes, ns);
    };
    const fioFile = path.join(dir, 'fio.dat');
    // First writes allocate the files' blocks; both sides then write over existing files.
    await tier('offload');
    if (haveFio) fioGBps(fioFile, 'write');
    for (let round = 0; round < trials; round++) {
      log(`round ${round + 1}/${trials}: fio, NVMe tier ...`);
      if (haveFio) keep('fio write', fioGBps(fioFile, 'write'));
      keep('nvme write', await tier('offload'));
      if (haveFio) keep('fio read', fioGBps(fioFile, 'read'));
      keep('nvme read', await tier('promote'));
    }
    disk.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await a.close();
    await b.close();
  }
  const note = direct ? undefined : 'no O_DIRECT on this filesystem (buffered)';
  rows.push(row('nvme write (offload)', top.get('nvme write')!, top.get('fio write') ?? null, 'fio O_DIRECT io_uring', note));
  rows.push(row('nvme read (promote)', top.get('nvme read')!, top.get('fio read') ?? null, 'fio O_DIRECT io_uring', note));

  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const load = `${loadAtStart.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at end`;
  const info = { machine: cpu, cores: os.cpus().length, node: process.version, diskBackend: a.info.diskBackend, diskDir: baseDir, loadAverage1m: load };
  const command = `npm run bench:engine${args.length ? ' -- ' + args.join(' ') : ''}`;
  if (json) {
    console.log(JSON.stringify({ bench: 'engine', date: new Date().toISOString(), command, ...info, targetRatio, rows, hints }));
  } else {
    const fmt = (n: number | null, d = 2) => (n === null ? '-' : n.toFixed(d));
    const lines = [
      '| path | mooring GB/s | limit GB/s | ratio | limit |',
      '|---|---:|---:|---:|---|',
      ...rows.map((r) => `| ${r.path} | ${fmt(r.mooringGBps)} | ${fmt(r.limitGBps)} | ${r.ratio === null ? '-' : (r.ratio * 100).toFixed(0) + '%'} | ${r.limit}${r.note ? ' — ' + r.note : ''} |`),
    ];
    console.log(lines.join('\n'));
    for (const h of hints) console.log(`hint: ${h}`);
  }
  if (record) {
    const file = path.join(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench'), 'RESULTS.md');
    const section = [
      '',
      `## engine — ${new Date().toISOString().slice(0, 10)}`,
      '',
      `Machine: ${cpu}, ${info.cores} cores; Node ${process.version}; disk backend ${info.diskBackend}, files in ${baseDir}; ` +
        `1-min load average ${load} (the machine is shared; figures are the best of ${trials} interleaved rounds on both sides).`,
      `Command: \`${command}\`. Target: ≥ ${targetRatio * 100}% of each limit.`,
      '',
      '| path | mooring GB/s | limit GB/s | ratio | limit |',
      '|---|---:|---:|---:|---|',
      ...rows.map((r) => `| ${r.path} | ${r.mooringGBps.toFixed(2)} | ${r.limitGBps === null ? '-' : r.limitGBps.toFixed(2)} | ${r.ratio === null ? '-' : (r.ratio * 100).toFixed(0) + '%'} | ${r.limit}${r.note ? ' — ' + r.note : ''} |`),
      ...hints.map((h) => `\nHint: ${h}`),
      '',
    ].join('\n');
    if (!existsSync(file)) appendFileSync(file, '# Benchmark results\n');
    appendFileSync(file, section);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
