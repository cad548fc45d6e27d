/**
 * Stop strings over streamed text. Tokens split text arbitrarily, so a stop string may arrive in pieces: the
 * matcher holds back the longest tail that could still begin a stop string and releases it once it cannot.
 */
export class StopMatcher {
  private readonly stops: string[];
  private held = '';
  private stopped = false;

  constructor(stops: string[]) {
    this.stops = stops.filter((stop) => stop.length > 0);
  }

  /** Text that is final (never part of a stop string); on a match, the text before it and stopped = true. */
  push(text: string): { emit: string; stopped: boolean } {
    if (this.stopped) return { emit: '', stopped: true };
    const pending = this.held + text;
    const matchAt = this.firstCompletedMatch(pending);
    if (matchAt >= 0) {
      this.stopped = true;
      this.held = '';
      return { emit: pending.slice(0, matchAt), stopped: true };
    }
    const keep = this.longestPossibleStart(pending);
    this.held = pending.slice(pending.length - keep);
    return { emit: pending.slice(0, pending.length - keep), stopped: false };
  }

  /** At the end of generation the held tail can no longer become a stop string. */
  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }

  /**
   * Start of the stop string that completes first (the one generation would have stopped on had the text come
   * one character at a time), the longest one when several end together; -1 if none. This makes the result
   * independent of how the text was chunked.
   */
  private firstCompletedMatch(text: string): number {
    let bestStart = -1;
    let bestEnd = Infinity;
    for (const stop of this.stops) {
      const start = text.indexOf(stop);
      if (start < 0) continue;
      const end = start + stop.length;
      if (end < bestEnd || (end === bestEnd && start < bestStart)) {
        bestStart = start;
        bestEnd = end;
      }
    }
    return bestStart;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private longestPossibleStart(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, text.length); length > longest; length--) {
        if (text.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}
