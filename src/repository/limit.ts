/** Bounded concurrency for the many small file operations of a repository. */

/**
 * Runs `fn` over `items` with at most `limit` in flight. After a failure no
 * new item starts, and the first error is thrown only once every item in
 * flight has settled, so no write is still running when the caller cleans up.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const workers = Array.from(
    { length: Math.min(limit, items.length) },
    async () => {
      while (next < items.length && !failure) {
        const i = next++;
        try {
          out[i] = await fn(items[i], i);
        } catch (error) {
          failure ??= { error };
        }
      }
    },
  );
  await Promise.all(workers);
  if (failure) throw failure.error;
  return out;
}
