import { SeededRng, StopMatcher } from '../lib/sampling';

/** Feeds chunks and returns the text the caller would show, and whether it stopped. */
function run(stops: string[], chunks: string[]): { text: string; stopped: boolean } {
  const matcher = new StopMatcher(stops);
  let text = '';
  for (const chunk of chunks) {
    const { emit, stopped } = matcher.push(chunk);
    text += emit;
    if (stopped) return { text, stopped };
  }
  return { text: text + matcher.flush(), stopped: false };
}

/** The output as if text came one character at a time: cut before the first stop string to be completed. */
function expected(stops: string[], full: string): { text: string; stopped: boolean } {
  for (let end = 1; end <= full.length; end++) {
    const completed = stops.filter((stop) => full.slice(0, end).endsWith(stop));
    if (completed.length) return { text: full.slice(0, end - Math.max(...completed.map((stop) => stop.length))), stopped: true };
  }
  return { text: full, stopped: false };
}

function randomSplit(text: string, rng: SeededRng): string[] {
  const chunks: string[] = [];
  let at = 0;
  while (at < text.length) {
    const length = Math.floor(rng.nextFloat() * 4); // empty chunks happen too (a token that decodes to nothing yet)
    chunks.push(text.slice(at, at + length));
    at += length;
  }
  return chunks;
}

describe('StopMatcher', () => {
  test('a stop string split over many chunks is cut, stop text excluded', () => {
    expect(run(['STOP'], ['Hello S', 'T', 'O', 'P and more'])).toEqual({ text: 'Hello ', stopped: true });
    expect(run(['\n\n'], ['line one\n', '\nline two'])).toEqual({ text: 'line one', stopped: true });
  });

  test('text that only looked like a stop prefix is released', () => {
    const matcher = new StopMatcher(['STOP']);
    expect(matcher.push('Hello ST')).toEqual({ emit: 'Hello ', stopped: false });
    expect(matcher.push('ART')).toEqual({ emit: 'START', stopped: false });
    expect(matcher.push('S')).toEqual({ emit: '', stopped: false });
    expect(matcher.flush()).toBe('S');
  });

  test('overlapping prefixes: a failed partial match may start another match', () => {
    expect(run(['abac'], ['ab', 'ab', 'ac'])).toEqual({ text: 'ab', stopped: true });
    expect(run(['aab'], ['a', 'a', 'a', 'b', 'x'])).toEqual({ text: 'a', stopped: true });
  });

  test('with several stops the first one completed wins, however the text was chunked', () => {
    expect(run(['world', 'o w'], ['hell', 'o wor', 'ld'])).toEqual({ text: 'hell', stopped: true });
    expect(run(['xyz', 'b'], ['axy', 'b'])).toEqual({ text: 'axy', stopped: true });
    // "aa" completes before "baa\n" can, whether or not both arrive in one chunk.
    expect(run(['baa\n', 'aa'], ['x b', 'aa\n'])).toEqual({ text: 'x b', stopped: true });
    expect(run(['baa\n', 'aa'], ['x baa\n'])).toEqual({ text: 'x b', stopped: true });
    // Stops ending together: the longer one is cut out whole.
    expect(run(['aa', 'baa'], ['x ba', 'a'])).toEqual({ text: 'x ', stopped: true });
  });

  test('after a stop nothing more is emitted', () => {
    const matcher = new StopMatcher(['.']);
    expect(matcher.push('end. tail')).toEqual({ emit: 'end', stopped: true });
    expect(matcher.push('more')).toEqual({ emit: '', stopped: true });
    expect(matcher.flush()).toBe('');
  });

  test('without stops text passes straight through', () => {
    const matcher = new StopMatcher([]);
    expect(matcher.push('abc')).toEqual({ emit: 'abc', stopped: false });
    expect(matcher.flush()).toBe('');
  });

  test('random texts in random chunks agree with a character-at-a-time oracle', () => {
    const rng = new SeededRng(11);
    const alphabet = 'ab\n';
    const pick = (length: number) => Array.from({ length }, () => alphabet[Math.floor(rng.nextFloat() * alphabet.length)]).join('');
    for (let trial = 0; trial < 2000; trial++) {
      const stops = Array.from({ length: 1 + Math.floor(rng.nextFloat() * 3) }, () => pick(2 + Math.floor(rng.nextFloat() * 3)));
      const text = pick(Math.floor(rng.nextFloat() * 30));
      expect({ trial, ...run(stops, randomSplit(text, rng)) }).toEqual({ trial, ...expected(stops, text) });
    }
  });
});
