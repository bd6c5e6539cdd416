// StoreClient: put/get/remove = master metadata (through Raft) + engine bytes, with DRAM → NVMe tiering.
export {
  StoreClient,
  defaultStagingSlotBytes,
  defaultStagingSlots,
  defaultTransferTimeoutMs,
  defaultPromoteAfterHits,
} from './store-client.js';
export type { StoreClientOptions, PutOptions, PutResult, BatchItemResult, TierTask, StoreStats } from './store-client.js';
export { trailerBytes, sealInto, unseal } from './checksum.js';
