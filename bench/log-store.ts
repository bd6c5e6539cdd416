/**
 * LogStore write throughput: durable (sync) batches of 1, 16, 64 and 256 entries, as the driver's group commit
 * produces them; plus reopen (load + verify) time for the resulting log.
 *   npm run bench:log-store [-- --json] [-- --seconds N]
 */
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { LogStore, encodeEntry } from '../src/raft/log-store.js';
import type { Entry } from '../src/raft/core/types.js';

const json = process.argv.includes('--json');
const secondsArg = process.argv.indexOf('--seconds');
const secondsPerCase = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 2;
const entryDataBytes = 128;

interface Row {
  store: string;
  batchEntries: number;
  sync: boolean;
  batchesPerSec: number;
  entriesPerSec: number;
  meanBatchMs: number;
  reopenEntries: number;
  reopenMs: number;
}

async function runCase(batchEntries: number, sync: boolean): Promise<Row> {
  const dir = await mkdtemp(join(os.tmpdir(), 'mooring-bench-log-'));
  const store = await LogStore.open(dir);
  const data = new Uint8Array(entryDataBytes).fill(7);
  let index = 0;
  let batches = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(secondsPerCase * 1e9));
  while (process.hrtime.bigint() < deadline) {
    const entries: Entry[] = [];
    for (let k = 0; k < batchEntries; k++) entries.push({ index: ++index, term: 1, type: 'normal', data });
    await store.save({ entries, hardState: { term: 1, vote: 'a', commit: index } }, { sync });
    batches++;
  }
  const elapsedS = Number(process.hrtime.bigint() - start) / 1e9;
  await store.close();
  const t0 = process.hrtime.bigint();
  const reopened = await LogStore.open(dir);
  const reopenMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const reopenEntries = reopened.lastIndex();
  await reopened.close();
  await rm(dir, { recursive: true, force: true });
  return {
    store: 'LogStore',
    batchEntries,
    sync,
    batchesPerSec: Math.round(batches / elapsedS),
    entriesPerSec: Math.round(index / elapsedS),
    meanBatchMs: Number(((elapsedS * 1000) / batches).toFixed(3)),
    reopenEntries,
    reopenMs: Math.round(reopenMs),
  };
}

/** The same puts straight into LevelDB (no checksum, no mirror, no hard state): the floor LogStore sits on. */
async function rawCase(batchEntries: number): Promise<Row> {
  const dir = await mkdtemp(join(os.tmpdir(), 'mooring-bench-raw-'));
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const data = new Uint8Array(entryDataBytes).fill(7);
  let index = 0;
  let batches = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(secondsPerCase * 1e9));
  while (process.hrtime.bigint() < deadline) {
    const ops = [];
    for (let k = 0; k < batchEntries; k++) {
      const { key, value } = encodeEntry({ index: ++index, term: 1, type: 'normal', data });
      ops.push({ type: 'put' as const, key, value });
    }
    await db.batch(ops, { sync: true });
    batches++;
  }
  const elapsedS = Number(process.hrtime.bigint() - start) / 1e9;
  await db.close();
  await rm(dir, { recursive: true, force: true });
  return {
    store: 'raw LevelDB',
    batchEntries,
    sync: true,
    batchesPerSec: Math.round(batches / elapsedS),
    entriesPerSec: Math.round(index / elapsedS),
    meanBatchMs: Number(((elapsedS * 1000) / batches).toFixed(3)),
    reopenEntries: 0,
    reopenMs: 0,
  };
}

const loadBefore = os.loadavg()[0]!.toFixed(2);
const rows: Row[] = [];
for (const [n, sync] of [[1, true], [16, true], [64, true], [256, true], [64, false]] as const) {
  rows.push(await runCase(n, sync));
  if (sync && (n === 1 || n === 64)) rows.push(await rawCase(n));
}

const machine = { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version };
if (json) {
  console.log(JSON.stringify({ bench: 'log-store', date: new Date().toISOString(), machine, entryDataBytes, secondsPerCase, rows }));
} else {
  console.log(`LogStore (${entryDataBytes}-byte entries, ${secondsPerCase} s per case) on ${machine.cpu}, ${machine.cores} cores`);
  console.table(rows);
}

const lines = [
  '',
  `## log-store — ${new Date().toISOString().slice(0, 10)}`,
  `Machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}. Command: \`npm run bench:log-store\`. ` +
    `${entryDataBytes}-byte entries, one LevelDB batch per save (entries + hard state), ${secondsPerCase} s per case. ` +
    `Load average at start ${loadBefore} (the machine is shared; fsync-bound figures vary run to run).`,
  '',
  '| store | entries/batch | sync | batches/s | entries/s | mean batch ms | reopen: entries | reopen ms |',
  '|---|---:|:---:|---:|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.store} | ${r.batchEntries} | ${r.sync ? 'yes' : 'no'} | ${r.batchesPerSec} | ${r.entriesPerSec} | ${r.meanBatchMs} | ${r.reopenEntries || '-'} | ${r.reopenEntries ? r.reopenMs : '-'} |`),
  '',
];
appendFileSync(new URL('../../bench/RESULTS.md', import.meta.url), lines.join('\n'));
