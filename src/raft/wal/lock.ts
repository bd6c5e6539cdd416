/**
 * One writer per data dir: a LOCK file holding the owner's pid and process start time.
 *
 * Node has no flock(2), so the lock is a file created with O_EXCL. A lock left by a process that died is stale
 * and taken over: the owner is alive only if its pid exists AND (on Linux) its start time in /proc matches the
 * one recorded, so a recycled pid after a reboot or container restart does not keep the dir locked forever.
 */
import { closeSync, fsyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, MooringError } from '../../errors.js';

export const lockFileName = 'LOCK';

/** Dirs locked by this process (a second open in the same process is refused too). */
const heldHere = new Set<string>();

function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) follows the command name, which may contain spaces: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function alive(pid: number, startTime: string | null): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (startTime === null) return true;
  const now = startTimeOf(pid);
  return now === null || now === startTime;
}

export class DirLock {
  private released = false;
  private constructor(readonly dir: string, private readonly file: string) {}

  /** Takes the lock on `dir` or throws STORAGE_FAILED naming the process that holds it. */
  static acquire(dir: string): DirLock {
    const abs = path.resolve(dir);
    if (heldHere.has(abs)) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, `another process holds ${abs} (this process has it open already)`);
    }
    const file = path.join(abs, lockFileName);
    const mine = JSON.stringify({ pid: process.pid, startTime: startTimeOf(process.pid) });
    for (let attempt = 0; attempt < 2; attempt++) {
      let fd: number;
      try {
        fd = openSync(file, 'wx', 0o644);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new MooringError(ErrorCode.STORAGE_FAILED, `cannot create the lock file ${file}: ${(err as Error).message}`, { cause: err });
        }
        let owner: { pid?: unknown; startTime?: unknown } = {};
        try {
          owner = JSON.parse(readFileSync(file, 'utf8')) as typeof owner;
        } catch {
          // Unreadable or half-written: its writer died while creating it, so it is stale.
        }
        const pid = typeof owner.pid === 'number' ? owner.pid : null;
        if (pid !== null && pid !== process.pid && alive(pid, typeof owner.startTime === 'string' ? owner.startTime : null)) {
          throw new MooringError(ErrorCode.STORAGE_FAILED, `another process holds ${abs} (pid ${pid}, see ${file}); stop it first`);
        }
        rmSync(file, { force: true });
        continue;
      }
      try {
        writeSync(fd, mine);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      heldHere.add(abs);
      return new DirLock(abs, file);
    }
    throw new MooringError(ErrorCode.STORAGE_FAILED, `another process holds ${abs} (its lock file ${file} keeps reappearing)`);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.dir);
    rmSync(this.file, { force: true });
  }
}
