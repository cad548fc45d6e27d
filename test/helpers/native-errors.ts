/** The code of a native engine call's rejection ("[CODE] message"), or 'resolved' when it did not reject. */
export async function nativeCodeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return /^\[(E_[A-Z_]+)\]/.exec((err as Error).message)?.[1] ?? String(err);
  }
  return 'resolved';
}
