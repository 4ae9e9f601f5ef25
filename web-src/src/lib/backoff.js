// Reconnection schedule: exponential with jitter, as JsSIP does, but
// computed by us so the page can show an exact countdown.

/**
 * Seconds to wait before reconnection attempt number `attempt` (1, 2, ...):
 * a random whole number in [1, 2^attempt], clamped to [min, max].
 * rand: () => [0,1).
 */
export function backoffDelay(attempt, min = 2, max = 30, rand = Math.random) {
  const a = Math.max(1, Math.min(30, Math.floor(attempt)));
  let k = Math.floor(rand() * 2 ** a + 1);
  if (k < min) k = min;
  if (k > max) k = max;
  return k;
}

/** Whole seconds left until `at` (ms since epoch), never negative. */
export function secondsLeft(at, now) {
  return Math.max(0, Math.ceil((at - now) / 1000));
}
