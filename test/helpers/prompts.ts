import type { NativeEngine } from '../../lib/native';

export interface PromptsBesideSolo {
  /** Each prompt's last-row logits from one forwardPrompts call, and from one call per prompt (see `solo`). */
  together: Float32Array;
  alone: Float32Array;
  /** The decode step after either: the same when the grouped call wrote the same keys and values. */
  nextTogether: Float32Array;
  nextAlone: Float32Array;
}

/**
 * Prefills `prompts` into fresh sequences of `engine` twice — all in one forwardPrompts call, then one call per
 * prompt: forward, or forwardPrompts of that prompt alone (`solo`) — and runs one decode step on each set; checks
 * both grew by their prompts; releases them all.
 */
export async function promptsBesideSolo(
  engine: NativeEngine,
  prompts: Int32Array[],
  vocab: number,
  solo: 'forward' | 'forwardPrompts' = 'forward',
): Promise<PromptsBesideSolo> {
  const grouped = Int32Array.from(prompts, () => engine.createSequence());
  const single = Int32Array.from(prompts, () => engine.createSequence());
  try {
    const ids = new Int32Array(prompts.reduce((n, p) => n + p.length, 0));
    prompts.reduce((at, p) => (ids.set(p, at), at + p.length), 0);
    const together = await engine.forwardPrompts(grouped, ids, Int32Array.from(prompts, (p) => p.length));
    const alone = new Float32Array(together.length);
    for (let i = 0; i < prompts.length; i++) {
      const one = Int32Array.of(single[i]);
      const logits = solo === 'forward' ? engine.forward(single[i], prompts[i], false) : engine.forwardPrompts(one, prompts[i], Int32Array.of(prompts[i].length));
      alone.set(await logits, i * vocab);
    }
    prompts.forEach((p, i) => {
      if (engine.sequenceLength(grouped[i]) !== p.length || engine.sequenceLength(single[i]) !== p.length) {
        throw new Error(`sequence ${i} does not hold its ${p.length} prompt tokens`);
      }
    });
    const next = Int32Array.from(prompts, (_, i) => (i * 7919 + 1) % vocab);
    const nextTogether = await engine.decodeBatch(grouped, next);
    const nextAlone = await engine.decodeBatch(single, next);
    return { together, alone, nextTogether, nextAlone };
  } finally {
    [...grouped, ...single].forEach((seq) => engine.releaseSequence(seq));
  }
}
