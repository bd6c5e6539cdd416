// Loads the native addon (native/build/Release/mooring_engine.node). Kept apart from index.ts so the loader's
// failure explains itself: a missing build, a missing toolchain, or an ABI mismatch.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, MooringError } from '../errors.js';

/** Shape of what the addon exports (see native/src/addon.cc). Internal: use the classes in index.ts. */
export interface NativeResult {
  status: 'completed' | 'failed' | 'timeout';
  protocol: string;
  code?: string;
  message?: string;
}
export interface NativeInfo {
  endpoint: string;
  hostId: string;
  pid: number;
  ioUringCompiled: boolean;
  ioUringActive: boolean;
  rdmaCompiled: boolean;
  rdmaActive: boolean;
  rdmaReason: string;
  diskBackend: string;
  segments: number;
  shmAttachments: number;
  warnings: string[];
}
export interface NativeRemote {
  segId: number;
  token: string;
  size: number;
  endpoint?: string;
  hostId?: string;
  shmPid?: number;
  shmFd?: number;
  rdmaRkey?: number;
  rdmaAddr?: string;
}
export interface NativeTransferReq {
  op: 0 | 1;
  localSeg: number;
  localOff: number;
  remote: NativeRemote;
  remoteOff: number;
  length: number;
}
export interface NativeDiskReq {
  op: 0 | 1;
  dramSeg: number;
  dramOff: number;
  diskSeg: number;
  diskOff: number;
  length: number;
}
export interface NativeSegment {
  id: number;
  token: string;
  size: number;
  fd: number;
  rkey?: number;
  addr?: bigint;
}
export interface NativeDiskSegment {
  id: number;
  token: string;
  size: number;
  direct: boolean;
}
export interface NativeEngineHandle {
  info(): NativeInfo;
  createSegment(name: string, size: number, hugePages: boolean): NativeSegment;
  createDiskSegment(name: string, path: string, size: number, direct: boolean): NativeDiskSegment;
  closeSegment(id: number): void;
  segmentView(id: number, offset: number, length: number): ArrayBuffer;
  transfer(reqs: NativeTransferReq[], timeoutMs: number, protocol: number): Promise<NativeResult[]>;
  disk(reqs: NativeDiskReq[], timeoutMs: number): Promise<NativeResult[]>;
  close(): void;
}
export interface NativeAddon {
  NativeEngine: new (opts: Record<string, unknown>) => NativeEngineHandle;
  memcpyBench(bytes: number, iterations: number): number;
  abiVersion: number;
}

const addonAbiVersion = 1;

function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'mooring') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the mooring package root');
    dir = up;
  }
}

/** Where the addon is looked for: $MOORING_ENGINE_ADDON, else native/build/Release/mooring_engine.node. */
export function addonPath(): string {
  const override = process.env.MOORING_ENGINE_ADDON;
  if (override !== undefined && override !== '') return path.resolve(override);
  return path.join(packageRoot(), 'native', 'build', 'Release', 'mooring_engine.node');
}

const howToFix =
  'Build it with `npm run build:native` (needs cmake and a C++17 compiler; liburing-dev enables io_uring and ' +
  'libibverbs-dev enables RDMA, both optional). The control plane (mooring) works without it.';

export function loadAddon(): NativeAddon {
  let file: string;
  try {
    file = addonPath();
  } catch (e) {
    throw new MooringError(ErrorCode.ENGINE_UNAVAILABLE, `mooring/engine: ${(e as Error).message}. ${howToFix}`);
  }
  if (!existsSync(file)) {
    // scripts/build-native.js leaves the reason of a failed build next to where the addon would be.
    const errorFile = path.join(path.dirname(path.dirname(file)), 'build-error.txt');
    let why = '';
    try {
      why = `; the last build failed: ${readFileSync(errorFile, 'utf8').split('\n')[0]}`;
    } catch {
      // no recorded failure: never built
    }
    throw new MooringError(
      ErrorCode.ENGINE_UNAVAILABLE,
      `mooring/engine: the native addon was not built (${file} is missing${why}). ${howToFix}`,
    );
  }
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (e) {
    throw new MooringError(
      ErrorCode.ENGINE_UNAVAILABLE,
      `mooring/engine: the native addon at ${file} failed to load (${(e as Error).message}). ${howToFix}`,
      { cause: e },
    );
  }
  if (addon.abiVersion !== addonAbiVersion) {
    throw new MooringError(
      ErrorCode.ENGINE_UNAVAILABLE,
      `mooring/engine: the native addon at ${file} is stale (ABI ${String(addon.abiVersion)}, want ${addonAbiVersion}). ${howToFix}`,
    );
  }
  return addon;
}
