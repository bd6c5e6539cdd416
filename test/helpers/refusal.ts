/** Test helper: the MooringError a call throws (the test fails if it throws something else, or nothing). */
import { expect } from 'vitest';
import { MooringError } from '../../src/errors.js';

export function refusal(f: () => unknown): MooringError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(MooringError);
    return e as MooringError;
  }
  throw new Error('not refused');
}
