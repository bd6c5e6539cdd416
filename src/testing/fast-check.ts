/**
 * fast-check for `mooring/testing`. It is an optional peer dependency (only property-test users need it), so a
 * missing install is reported by name instead of as an ERR_MODULE_NOT_FOUND from deep inside the package.
 */
import type * as FastCheckModule from 'fast-check';

type FastCheck = typeof FastCheckModule;

async function loadFastCheck(): Promise<FastCheck> {
  try {
    return await import('fast-check');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new Error(
      'mooring/testing needs fast-check, an optional peer dependency of mooring: run `npm install --save-dev fast-check@^4`',
      { cause: err },
    );
  }
}

const fc: FastCheck = await loadFastCheck();
export default fc;
