// RFC 7396 JSON merge patches: the patch that turns one document into another, and applying one.

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function sameJson(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && sameJson(a[k], b[k]));
}

/**
 * The merge patch from `before` to `after` (both plain JSON objects), or null when they are
 * equal. A member set to null in `after` is removed (a merge patch cannot store a null member);
 * arrays are replaced whole.
 */
export function diffMergePatch(before, after) {
  const patch = {};
  let changed = false;
  for (const k of Object.keys(before)) {
    if (!Object.prototype.hasOwnProperty.call(after, k) || after[k] === null) {
      if (before[k] !== null) {
        patch[k] = null;
        changed = true;
      }
    }
  }
  for (const k of Object.keys(after)) {
    const a = after[k];
    if (a === null) continue;
    const b = before[k];
    if (isObject(a) && isObject(b)) {
      const sub = diffMergePatch(b, a);
      if (sub !== null) {
        patch[k] = sub;
        changed = true;
      }
    } else if (!Object.prototype.hasOwnProperty.call(before, k) || !sameJson(a, b)) {
      patch[k] = a;
      changed = true;
    }
  }
  return changed ? patch : null;
}

/** `target` with the merge patch applied (neither is modified). */
export function applyMergePatch(target, patch) {
  if (!isObject(patch)) return patch;
  const out = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}
