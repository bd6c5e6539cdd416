// Public surface of `mooring/engine` (the native data path). Filled in by the engine work.
export {};
