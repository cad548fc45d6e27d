/** Tokens per second over the last few seconds, from per-second buckets (no per-token timestamps kept). */
export class TokenRate {
  private readonly counts: Float64Array;
  private readonly seconds: Float64Array;

  constructor(private readonly windowSeconds = 10) {
    this.counts = new Float64Array(windowSeconds);
    this.seconds = new Float64Array(windowSeconds).fill(-1);
  }

  add(tokens: number, nowMs = performance.timeOrigin + performance.now()): void {
    const second = Math.floor(nowMs / 1000);
    const slot = second % this.windowSeconds;
    if (this.seconds[slot] !== second) {
      this.seconds[slot] = second;
      this.counts[slot] = 0;
    }
    this.counts[slot] += tokens;
  }

  /** Tokens counted in the window, divided by the window's length (the current second counts as far as it went). */
  perSecond(nowMs = performance.timeOrigin + performance.now()): number {
    const second = Math.floor(nowMs / 1000);
    const oldest = second - this.windowSeconds + 1;
    let total = 0;
    for (let slot = 0; slot < this.windowSeconds; slot++) {
      if (this.seconds[slot] >= oldest) total += this.counts[slot];
    }
    return total / (nowMs / 1000 - oldest);
  }
}
