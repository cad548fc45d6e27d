/** Waits in tests that need real time to pass (timers, arrivals spread out). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or the error `message()` says once `ms` pass first (the timer never outlives the race). */
export async function within<T>(promise: Promise<T>, ms: number, message: () => string | Promise<string>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(async () => reject(new Error(await message())), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
