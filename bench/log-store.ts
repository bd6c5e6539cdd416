/**
 * Raft log write throughput: durable (synced) saves of 1, 16, 64 and 256 entries — one save per Ready round, as the
 * driver's group commit produces them — for the WAL (the default, O_DSYNC; also with write + fdatasync), 0.1's LevelDB LogStore, and raw LevelDB
 * batches (the floor LogStore sits on), next to fio's fdatasync rate on the same disk (the physical limit: one
 * synced write per save is the best any log can do). Plus reopen (load + verify) time of the resulting log.
 *   npm run bench:log-store [-- --json] [-- --seconds N] [-- --rounds N]
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { LogStore, encodeEntry, type DurableLogStorage } from '../src/raft/log-store.js';
import type { Entry } from '../src/raft/core/types.js';
import { Wal } from '../src/raft/wal/wal.js';
import { appendResults, machineInfo, parseArgs, round, table } from './lib/report.js';

const args = parseArgs();
const secondsPerCase = args.num('seconds', 2);
const entryDataBytes = 128;
const fioBlockBytes = 4096;

interface Row {
  store: string;
  batchEntries: number;
  savesPerSec: number;
  entriesPerSec: number;
  meanSaveMs: number;
  reopenEntries: number | null;
  reopenMs: number | null;
}

type Opener = (dir: string) => Promise<DurableLogStorage>;
const stores: Array<{ name: string; open: Opener; sizes?: number[] }> = [
  { name: 'WAL', open: (dir) => Wal.open(dir) },
  { name: 'WAL, write + fdatasync', open: (dir) => Wal.open(dir, { walSyncMode: 'fdatasync' }), sizes: [1, 64] },
  { name: 'LevelDB LogStore (0.1)', open: (dir) => LogStore.open(dir) },
];

async function runCase(name: string, open: Opener, batchEntries: number): Promise<Row> {
  const dir = await mkdtemp(join(os.tmpdir(), 'mooring-bench-log-'));
  const store = await open(dir);
  const data = new Uint8Array(entryDataBytes).fill(7);
  let index = 0;
  let saves = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(secondsPerCase * 1e9));
  while (process.hrtime.bigint() < deadline) {
    const entries: Entry[] = [];
    for (let k = 0; k < batchEntries; k++) entries.push({ index: ++index, term: 1, type: 'normal', data });
    await store.save({ entries, hardState: { term: 1, vote: 'a', commit: index } }, { sync: true });
    saves++;
  }
  const elapsedS = Number(process.hrtime.bigint() - start) / 1e9;
  await store.close();
  const t0 = process.hrtime.bigint();
  const reopened = await open(dir);
  const reopenMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const reopenEntries = reopened.lastIndex();
  await reopened.close();
  await rm(dir, { recursive: true, force: true });
  return {
    store: name,
    batchEntries,
    savesPerSec: Math.round(saves / elapsedS),
    entriesPerSec: Math.round(index / elapsedS),
    meanSaveMs: round((elapsedS * 1000) / saves, 3),
    reopenEntries,
    reopenMs: Math.round(reopenMs),
  };
}

/** The same entries straight into LevelDB batches with sync (no hard state, no mirror): LogStore's floor. */
async function rawCase(batchEntries: number): Promise<Row> {
  const dir = await mkdtemp(join(os.tmpdir(), 'mooring-bench-raw-'));
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const data = new Uint8Array(entryDataBytes).fill(7);
  let index = 0;
  let saves = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(secondsPerCase * 1e9));
  while (process.hrtime.bigint() < deadline) {
    const ops = [];
    for (let k = 0; k < batchEntries; k++) {
      const { key, value } = encodeEntry({ index: ++index, term: 1, type: 'normal', data });
      ops.push({ type: 'put' as const, key, value });
    }
    await db.batch(ops, { sync: true });
    saves++;
  }
  const elapsedS = Number(process.hrtime.bigint() - start) / 1e9;
  await db.close();
  await rm(dir, { recursive: true, force: true });
  return { store: 'raw LevelDB batch', batchEntries, savesPerSec: Math.round(saves / elapsedS), entriesPerSec: Math.round(index / elapsedS), meanSaveMs: round((elapsedS * 1000) / saves, 3), reopenEntries: null, reopenMs: null };
}

/** fio: sequential 4 KiB writes, fdatasync after each, into a laid-out file in the same temp dir. Null if fio is missing. */
async function fioCase(): Promise<{ fdatasyncPerSec: number; version: string } | { missing: string }> {
  const version = spawnSync('fio', ['--version'], { encoding: 'utf8' });
  if (version.error !== undefined || version.status !== 0) return { missing: 'fio is not installed (apt-get install -y fio): the physical fdatasync limit was not measured' };
  const dir = await mkdtemp(join(os.tmpdir(), 'mooring-bench-fio-'));
  try {
    const r = spawnSync('fio', [
      '--name=wal-fdatasync', `--filename=${join(dir, 'fio.dat')}`, '--rw=write', `--bs=${fioBlockBytes}`, '--size=64m',
      '--ioengine=sync', '--fdatasync=1', '--time_based', `--runtime=${Math.max(1, Math.round(secondsPerCase))}`, '--output-format=json',
    ], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
    if (r.status !== 0) return { missing: `fio failed: ${r.stderr.trim().split('\n').pop() ?? r.status}` };
    const out = JSON.parse(r.stdout) as { jobs: Array<{ write: { iops: number } }> };
    return { fdatasyncPerSec: Math.round(out.jobs[0]!.write.iops), version: version.stdout.trim() };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const machine = machineInfo();
// The disk and CPUs are shared: cases are interleaved over `rounds` rounds and each figure is the median round.
const rounds = args.num('rounds', 3);
const cases: Array<() => Promise<Row>> = [];
for (const n of [1, 16, 64, 256]) {
  for (const s of stores) if (s.sizes === undefined || s.sizes.includes(n)) cases.push(() => runCase(s.name, s.open, n));
  if (n === 1 || n === 64) cases.push(() => rawCase(n));
}
const samples: Row[][] = cases.map(() => []);
const fioSamples: number[] = [];
let fio: { fdatasyncPerSec: number; version: string } | { missing: string } = { missing: 'fio not run' };
for (let r = 0; r < rounds; r++) {
  for (let c = 0; c < cases.length; c++) samples[c]!.push(await cases[c]!());
  fio = await fioCase();
  if ('fdatasyncPerSec' in fio) fioSamples.push(fio.fdatasyncPerSec);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: Row[] = samples.map((rs) => {
  const mid = [...rs].sort((a, b) => a.savesPerSec - b.savesPerSec)[Math.floor(rs.length / 2)]!;
  return mid;
});
if ('fdatasyncPerSec' in fio) fio = { ...fio, fdatasyncPerSec: median(fioSamples) };
const spread = samples.map((rs) => `${rs[0]!.store} ×${rs[0]!.batchEntries}: ${rs.map((r) => r.savesPerSec).join('/')}`).join('; ');
const loadAfter = os.loadavg().map((x) => round(x, 2));

const headers = ['store', 'entries/save', 'synced saves/s', 'entries/s', 'mean save ms', 'reopen: entries', 'reopen ms'];
const body = table(headers, rows.map((r) => [r.store, r.batchEntries, r.savesPerSec, r.entriesPerSec, r.meanSaveMs, r.reopenEntries ?? '-', r.reopenMs ?? '-']));
const fioLine = 'fdatasyncPerSec' in fio
  ? `fio (${fio.version}), same temp dir: ${fio.fdatasyncPerSec} fdatasync'd ${fioBlockBytes / 1024} KiB writes/s — the physical limit for synced saves/s.`
  : fio.missing;
const walByN = (n: number, name: string) => rows.find((r) => r.store === name && r.batchEntries === n)!;
const ratioLine = [1, 64].map((n) => `${n} entr${n === 1 ? 'y' : 'ies'}/save: WAL ${round(walByN(n, 'WAL').savesPerSec / walByN(n, 'LevelDB LogStore (0.1)').savesPerSec, 2)}× LogStore`).join('; ')
  + ('fdatasyncPerSec' in fio ? `; WAL 1-entry saves at ${Math.round((100 * walByN(1, 'WAL').savesPerSec) / fio.fdatasyncPerSec)} % of fio's fdatasync rate` : '');

if (args.json) {
  console.log(JSON.stringify({ bench: 'log-store', machine, loadAfter, entryDataBytes, secondsPerCase, rounds, rows, fio, samples, fioSamples }));
} else {
  console.log(`Raft log stores (${entryDataBytes}-byte entries, ${secondsPerCase} s per case, each save = entries + hard state, synced) on ${machine.cpu}, ${machine.cores} cores, load ${machine.loadavg.join(' / ')}`);
  console.log(body);
  console.log(fioLine);
  console.log(ratioLine);
  console.log(`saves/s per round: ${spread}; fio: ${fioSamples.join('/')}`);
}
appendResults('log-store (WAL vs LevelDB vs fio)', 'npm run bench:log-store', [
  `${entryDataBytes}-byte entries; one save = the entries + the hard state, synced (WAL: one O_DSYNC write, or write + fdatasync; LogStore: one synced LevelDB batch); ${secondsPerCase} s per case and round; temp dirs on the root disk. Load average at the end ${loadAfter.join(' / ')}: other engineers' builds and tests were running, so absolute figures are low and noisy; compare rows of the same run.`,
  '',
  body,
  '',
  fioLine,
  ratioLine,
  '',
  `Each figure is the median of ${rounds} interleaved rounds; saves/s per round: ${spread}; fio: ${fioSamples.join('/')}.`,
].join('\n'), machine);
