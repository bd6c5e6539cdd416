/**
 * `base` with `extra`'s fields added: what `{ ...base, ...extra }` means, built with Object.assign.
 *
 * Why not the spread: on Node 20 (V8 11.3), an object made by spreading a fresh object and adding properties got a
 * hidden class of its own each time. Every such request cost a new map in the old space (mark-compact GCs) and
 * megamorphic property access when msgpackr encoded it: a MasterClient call cost ~13 µs of client CPU instead of ~4.
 * Use this on per-request paths.
 */
export function withFields<A extends object, B extends object>(base: A, extra: B): A & B {
  return Object.assign({}, base, extra);
}
