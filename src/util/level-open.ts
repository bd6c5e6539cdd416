/**
 * Why a LevelDB database did not open, in words an operator can act on. The usual cause is a second process on
 * the same data dir (LevelDB's LOCK file), which LevelDB reports only as "Database failed to open".
 */
export function levelOpenFailure(what: string, dir: string, err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause;
  if (cause?.code === 'LEVEL_LOCKED') {
    return `cannot open ${what} at ${dir}: another process holds its lock (is a mooring master already running on this dataDir?)`;
  }
  return `cannot open ${what} at ${dir}: ${(err as Error)?.message ?? String(err)}`;
}
