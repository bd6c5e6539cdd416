/**
 * Output helpers shared by the CLI commands: aligned text tables, byte sizes, and the one error format
 * (`error CODE: message`) scripts can match on.
 */
import { ErrorCode, MooringError } from '../errors.js';

export type Row = Record<string, unknown>;

/** Renders rows as an aligned table; `columns` picks and orders the keys (header = key unless renamed). */
export function table(rows: Row[], columns: Array<string | [key: string, header: string]>): string {
  const cols = columns.map((c) => (typeof c === 'string' ? [c, c] : c));
  const cells = rows.map((r) => cols.map(([k]) => cell(r[k])));
  const widths = cols.map(([, h], i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(cols.map(([, h]) => h.toUpperCase())), ...cells.map(line)].join('\n');
}

function cell(v: unknown): string {
  if (v === undefined || v === null) return '-';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${UNITS[u]}`;
}

/** Parses `4096`, `64k`, `64KiB`, `1g`, `1.5GiB` (binary units) into bytes. */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(text);
  if (m === null) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `not a size: ${JSON.stringify(text)} (use e.g. 4096, 64KiB, 1GiB)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n <= 0) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `size out of range: ${text}`);
  return n;
}

export function parseInteger(text: string, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${name} must be an integer in ${min}..${max}, got ${JSON.stringify(text)}`);
  }
  return n;
}

/** `error CODE: message` on stderr; non-Mooring errors are reported as INTERNAL with their message. */
export function printError(err: unknown): void {
  const code = err instanceof MooringError ? err.code : ErrorCode.INTERNAL;
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`error ${code}: ${message}\n`);
}

/** Writes and waits until stdout has taken the text (a process.exit right after must not cut it). */
export function writeOut(text: string): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.write(text)) resolve();
    else process.stdout.once('drain', () => resolve());
  });
}
