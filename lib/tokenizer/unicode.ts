/**
 * Unicode data pinned to what Hugging Face `tokenizers` (0.22/0.23) uses, so ids do not depend on the
 * Unicode version of the Node.js runtime:
 *
 * - the pre-tokenizer regex runs in Oniguruma with Unicode 16.0 property tables;
 * - its NFC normalizer (`unicode-normalization-alignments`) has Unicode 9-era tables: it sees later
 *   characters as unassigned, so they neither reorder (combining class 0) nor compose.
 */

export const LETTER = 1;
export const NUMBER = 2;
export const SPACE = 3;
export const OTHER = 4;

/**
 * Class of every code point (\p{L}, \p{N}, White_Space = Oniguruma's \s, other) in Unicode 16.0, as runs:
 * a class letter (L, N, S, O) and the run length in base 36. Derived from Unicode 17.0 property escapes
 * with the letters and numbers new in 17.0 set back to "other"; checked against Hugging Face
 * `tokenizers` for every code point, and by test/tokenizer-unicode.test.ts.
 */
export const CLASS_RUNS =
  'O9S5OiS1OfNaO7LqO6LqOaS1OqS1O9L1O7N2O1L1O3N1L1O1N3O1LnO1LvO1LcqO4LcOeL5O7L1O1L1O3lL5O1L2O2L4O1L1O6L1O1L3O1L1' +
  'O1LkO1L2bO1L3vO8L4mO1L12O2L1O6L15O1zLrO4L4O19L17OlNaO4L2O1L2rO1L1OfL2O7L2NaL3O2L1OgL1O1LuOtL2hObL1OeNaLxO9L2' +
  'O4L1O5LmO4L1O9L1O3L1OnLpO7LbO5LoO1L6OhL16O1mL1iO3L1OiL1O7LaO4NaO1LgO4L8O2L2O2LmO1L7O1L1O3L4O3L1OgL1OdL2O1L3O' +
  '4NaL2O2N6O2L1O8L6O4L2O2LmO1L7O1L2O1L2O1L2OvL4O1L1O7NaO2L3OgL9O1L3O1LmO1L7O1L2O1L5O3L1OiL1OfL2O4NaO9L1ObL8O2L' +
  '2O2LmO1L7O1L2O1L5O3L1OuL2O1L3O4NaO1L1N6ObL1O1L6O3L3O1L4O3L2O1L1O1L2O3L2O3L3O3LcOmL1OlNdOiL8O1L3O1LnO1LgO3L1O' +
  'qL3O2L1O2L2O4NaO8N7O1L1O4L8O1L3O1LnO1LaO1L5O3L1OvL2O1L2O4NaO1L2OhL9O1L3O1L15O2L1OgL1O5L3O1N7L3O4NjO1L6O5LiO3' +
  'LoO1L9O1L1O2L7OvNaOhL1cO1L2OcL7O9NaO13L2O1L1O1L5O1LoO1L1O1LaO1L2O9L1O2L5O1L1O9NaO2L4OwL1OvNkOcL8O1L10OrL5O37' +
  'L17OkL1NaO6L6O4L4O3L1O3L2O7L3O4LdOcL1O1NaO6L12O1L1O5L1O2L17O1L99O1L4O2L7O1L1O1L4O2L15O1L4O2LxO1L4O2L7O1L1O1L' +
  '4O2LfO1L1lO1L4O2L1vOeNkO3LgOgL2eO2L6O3Lh8O2LhS1LqO5L23O3N3L8O7LiOdLjOeLiOeLdO1L3OfL1gOzL1O4L1O3NaO6NaOmNaO6L' +
  '2hO7L5O2LyO1L1O5L1yOaLvO13NaLuO2L5ObL18O4LqO6NbO11LnO9L1hO17NaO6NaOdL1O2lL1bOhL8O3NaO15LuOdL2NaL18OqL10OsNaO' +
  '3L3NaL10O2LbO5L17O2L3O15L4O1L6O1L2O3L1O5L5cO1sL7qO2L6O2L12O2L6O2L8O1L1O1L1O1L1O1LvO2L1hO1L7O1L1O3L3O1L7O3L4O' +
  '2L6O4LdO5L3O1L7O3SbOtS2O5S1O1bS1OgN1L1O2N6O5L1NaO6LdO2tL1O4L1O2LaO1L1O3L5O6L1O1L1O1L1O1L4O1LbO2L4O5L5O4L1O1N' +
  '1fL2N5Ok6N1oO26NmOhiNuOvgL6dO6L4O3L2O9N1O2L12O1L1O5L1O2L1kO7L1OgLnO9L7O1L7O1L7O1L7O1L7O1L7O1L7O1L7O28L1OcwS1' +
  'O4L2N1OpN9O7L5O2N3L2O4L2eO6L3O1L2iO1L4O5L17O1L2mO3N4OaLwO1cLgOwNaOuN8O1NfOwNaO13NfO8wL534O1sLh3hO1vL1aO2L7hO' +
  '3LgNaL2OkL1bOgLvO2L1yNaO13L9O2L2vO2L1vO2L2O1L1O1L8OlLgO1L3O1L4O1LnOdN6OaL1gOeL1eOsNaOoL6O3L1O1L2O1NaLsOaLnOp' +
  'LtO7L1bOsL1NaO6L5O1LaNaL5O1L15OnL3O1L8O4NaO6LnO3L1O3L1eO1L1O3L2O2L5O2L1O1L1OoL3O2LbO7L3OcL6O2L6O2L6O9L7O1L7O' +
  '1L17O1LeO6L37OdNaO6L8mcOcLnO4L1dO6isLa6O2L2yO12L7OcL5O5L1O1LaO1LdO1L5O1L1O1L2O1L2O1L30OxLa3OiL1sO2L1iO14LcO3' +
  '8L5O1L3rOjNaO7LqO6LqObL2hO3L6O2L6O2L6O2L3OzLcO1LqO1LjO1L2O1LfO2LeOyL3fOcN19OcN1lOhN2O6sLtO3L1dOgNrO4LwN4O9Lk' +
  'N1L8N1O5L12OaLuO2L10O4L8O1N5O16L4eO2NaO6L10O4L10O4L14O8L1gOcLbO1LfO1L7O1L2O1LbO1LfO1L7O1L2O3L1gOcL8nO9LmOaL8' +
  'OoL6O1L16O1L9O1xL6O2L1O1L18O1L2O3L1O2LnO2N8LnO2N7LvO8N9O1cLjO1L2O5N5LmN6O4LqO1yL1kO4N2L2NgO2N1aL1OfL4O1L3O1L' +
  'tOaN9OnLtN2O1LtN3OwL8O1LsO6N5OgL1iOaLmO2N8LjO5N8LiOnN7O28L21O1jL1fOdL1fO7N6L10OcNaO6NaLsO9LnO62NvO1L16O6L2Og' +
  'L3O1nLtNaL1O8LmObN4OrLiO1aLlN7OkLnOcL1hOqNuO1L2O2L1OdL19OwLpO7NaO9L10OfNaO4L1O2L1O8LzO3L1OcL1cOeL4ObNaL1O1L1' +
  'O4NkObLiO1LpOjL2O1rL7O1L1O1L4O1LfO1LaO7L1bOhNaObL8O2L2O2LmO1L7O1L2O1L5O3L1OiL1OcL5OuLaO1L1O2L1O1L12O1L1OpL1O' +
  '1L1O18L1hOiL4O5NaO5L3OuL1cOkL2O1L1O8NaO4mL1bO15L4O10L1cOkL1ObNaO12L17OdL1O7NaO6NkOsLrOlNcO4L7O55L18O38L1sNjO' +
  'cL8O2L1O2L8O1L2O1LoOfL1O1L1OeNaO1yL8O2L13OgL1O1L1OsL1OaL14O7L1OlL1ObL1aOjL1OiL21O5jLxOfNaO6L9O1L11OhL1OfNtO5' +
  'LuO34L7O1L2O1L12OlL1O9NaO6L6O1L2O1LwOeL1O7NaO8mLjOfL1O1LdO1LyOsNaO2eL1OfNlO17LpmO2uN33OhL5gO218L2pOfLtsOhL6O' +
  'pL32zO5Lg7O5a1LuOiNaO1c6LftO7LvO1NaO6L27O1NaO6LuOiL1cOgL4OcNaO1N7O1LlO5LjOc0L19O3NaO5iL1sNnO2xL23O5L1O1uLdO1' +
  'sL2O1L1OsL4qgO8LyeO15LaO6w7L4O1L7O1L2O1L83OfL1OtL3O2L1OeL4O8Lb0O1s4L2zO5LdO3L9O7LaO386NaO152NkOcNkO30NpO3rL2' +
  'dO1L1zO1L2O2L1O2L2O2L4O1LcO1L1O1L7O1L1tO1L4O2L8O1L7O1LsO1L4O1L5O1L1O3L7O1L9gO2LpO1LpO1LvO1LpO1LvO1LpO1LvO1Lp' +
  'O1LvO1LpO1L8O2N1eO1dsLvO6L6O79L1qO42L19OaL7O2NaO4L1O8xLuOiL18O4NaOd2LsO4NaO5yLuO2L1NaOdhL7O1L4O1L2O1LfO1L5hO' +
  '2N9O1cL1wO7L1O4NaOlzN1nO1N3O1N4O24N19O1NfO5eL4O1LrO1L2O1L1O2L1O1LaO1L4O1L1O1L1O6L1O4L1O1L1O1L1O1L3O1L2O1L1O2' +
  'L1O1L1O1L1O1L1O1L1O1L2O1L1O2L4O1L7O1L4O1L4O1L1O1LaO1LhO5L3O1L5O1LhOg4NdO25fNaOsmLwyoOwL37eO6L66O2L4g2OeL5rlO' +
  'fLhaO1wiLf2O15uL3t7O5L38gOjgwg';

/** Class of each code point, decoded from CLASS_RUNS. */
const classes = (() => {
  const table = new Uint8Array(0x110000);
  let codePoint = 0;
  for (const [, cls, length] of CLASS_RUNS.matchAll(/([LNSO])([0-9a-z]+)/g)) {
    const end = codePoint + parseInt(length, 36);
    table.fill('LNSO'.indexOf(cls) + 1, codePoint, end);
    codePoint = end;
  }
  return table;
})();

/** Class of a code point (LETTER, NUMBER, SPACE or OTHER); lone surrogates are OTHER, like U+FFFD. */
export function classOf(codePoint: number): number {
  return classes[codePoint];
}

/**
 * Characters the reference's NFC tables do not know but newer Unicode gives a combining class or a
 * composition (found by comparing it with String.prototype.normalize over every code point).
 */
const NEWER_NORMALIZATION =
  /[\u{07fd}\u{0897}-\u{089f}\u{08ca}-\u{08d3}\u{09fe}\u{0c3c}\u{0d3b}-\u{0d3c}\u{0eba}\u{1715}\u{1abf}-\u{1add}\u{1ae0}-\u{1aeb}\u{1df6}-\u{1dfa}\u{a82c}\u{105c9}\u{105d2}\u{105da}\u{105e4}\u{10d24}-\u{10d27}\u{10d69}-\u{10d6d}\u{10eab}-\u{10eac}\u{10efa}-\u{10efb}\u{10efd}-\u{10eff}\u{10f46}-\u{10f50}\u{10f82}-\u{10f85}\u{11070}\u{1133b}\u{11382}-\u{11385}\u{1138b}\u{1138e}\u{11390}-\u{11391}\u{113b8}\u{113bb}\u{113c2}\u{113c5}\u{113c7}-\u{113c9}\u{113ce}-\u{113d0}\u{1145e}\u{11839}-\u{1183a}\u{11930}\u{11935}\u{11938}\u{1193d}-\u{1193e}\u{11943}\u{119e0}\u{11a34}\u{11a47}\u{11a99}\u{11d42}\u{11d44}-\u{11d45}\u{11d97}\u{11f41}-\u{11f42}\u{1611e}-\u{16129}\u{1612f}\u{16d63}\u{16d67}-\u{16d6a}\u{16ff0}-\u{16ff1}\u{1e08f}\u{1e130}-\u{1e136}\u{1e2ae}\u{1e2ec}-\u{1e2ef}\u{1e4ec}-\u{1e4ef}\u{1e5ee}-\u{1e5ef}\u{1e6e3}\u{1e6e6}\u{1e6ee}-\u{1e6ef}\u{1e6f5}]/u;
const NEWER_NORMALIZATION_ALL = new RegExp(NEWER_NORMALIZATION.source, 'gu');

/**
 * NFC as the reference computes it. A character it sees as unassigned is a starter that composes with
 * nothing, so normalization cannot cross it: normalizing the stretches between such characters and
 * keeping them as they are gives its result. Elsewhere the runtime's NFC agrees (Unicode keeps NFC
 * stable for assigned characters).
 */
export function nfcLikeReference(text: string): string {
  if (!NEWER_NORMALIZATION.test(text)) return text.normalize('NFC');
  let normalized = '';
  let stretchStart = 0;
  for (const match of text.matchAll(NEWER_NORMALIZATION_ALL)) {
    normalized += text.slice(stretchStart, match.index).normalize('NFC') + match[0];
    stretchStart = match.index + match[0].length;
  }
  return normalized + text.slice(stretchStart).normalize('NFC');
}
