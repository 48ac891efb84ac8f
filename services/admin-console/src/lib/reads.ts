/**
 * Reads that answer out of order: an earlier read (the list's range before, the service chosen
 * before) can answer after a later one, and showing it would show what the screen no longer asks
 * for.
 *
 * `const begin = latestRead()`; each `begin()` marks a read as begun and returns a check of
 * whether it is still the latest begun: for reads the user starts (a service chosen, a search).
 */
export function latestRead() {
  let begun = 0;
  return () => {
    const mine = ++begun;
    return () => mine === begun;
  };
}

/**
 * For reads also made again on their own (polls, live updates): `const begin = newerAnswers()`;
 * each `begin()` marks a read as begun and returns a check that passes, once, unless a read begun
 * later has answered already. Unlike {@link latestRead}, reads begun faster than they answer
 * still show every answer that is newer than the one shown.
 */
export function newerAnswers() {
  let begun = 0;
  let shown = 0;
  return () => {
    const mine = ++begun;
    return () => {
      if (mine <= shown) return false;
      shown = mine;
      return true;
    };
  };
}
