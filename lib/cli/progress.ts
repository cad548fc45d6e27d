import { SingleBar } from 'cli-progress';
import type { LoadProgress } from '../model';

/**
 * A load progress bar on stderr for the CLI (only when stderr is a terminal, so piped output and logs stay
 * clean). Pass `onProgress` to loadModel and call `stop()` once it settles.
 */
export function loadProgressBar(label: string): { onProgress?: (progress: LoadProgress) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { stop: () => undefined };
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${label} [{bar}] {percentage}% | {loadedMB}/{totalMB} MB`,
    hideCursor: true,
    clearOnComplete: true,
  });
  let started = false;
  const toMB = (bytes: number) => (bytes / 1e6).toFixed(0);
  return {
    onProgress: ({ loadedBytes, totalBytes }) => {
      if (!started) {
        bar.start(totalBytes, 0, { loadedMB: '0', totalMB: toMB(totalBytes) });
        started = true;
      }
      bar.update(loadedBytes, { loadedMB: toMB(loadedBytes) });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
