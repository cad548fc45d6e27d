/**
 * GPT-2's byte-level alphabet: every byte gets a printable stand-in character so that BPE vocabularies
 * can be stored as JSON strings. Printable Latin-1 bytes stand for themselves; the 68 others (controls,
 * space, DEL, NBSP, soft hyphen) take the code points 256, 257, ... in byte order.
 */
function buildByteToChar(): Uint16Array {
  const table = new Uint16Array(256);
  let nextStandIn = 256;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || byte >= 0xae;
    table[byte] = printable ? byte : nextStandIn++;
  }
  return table;
}

/** byte → code point of its stand-in character. */
export const BYTE_TO_CHAR = buildByteToChar();

/** code point → byte, -1 for characters outside the alphabet (all stand-ins are below 324). */
export const CHAR_TO_BYTE = (() => {
  const table = new Int16Array(324).fill(-1);
  BYTE_TO_CHAR.forEach((char, byte) => {
    table[char] = byte;
  });
  return table;
})();

/**
 * UTF-8 bytes of text[start, end) written into `out` (which must hold 3 bytes per UTF-16 unit); returns
 * the byte count. Lone surrogates become U+FFFD, as they do when a JS string crosses into Rust.
 */
export function encodeUtf8(text: string, start: number, end: number, out: Uint8Array): number {
  let length = 0;
  for (let i = start; i < end; i++) {
    let code = text.charCodeAt(i);
    if (code < 0x80) {
      out[length++] = code;
      continue;
    }
    if (code < 0x800) {
      out[length++] = 0xc0 | (code >> 6);
      out[length++] = 0x80 | (code & 0x3f);
      continue;
    }
    if (code >= 0xd800 && code <= 0xdfff) {
      const low = i + 1 < end ? text.charCodeAt(i + 1) : 0;
      if (code <= 0xdbff && low >= 0xdc00 && low <= 0xdfff) {
        const codePoint = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        out[length++] = 0xf0 | (codePoint >> 18);
        out[length++] = 0x80 | ((codePoint >> 12) & 0x3f);
        out[length++] = 0x80 | ((codePoint >> 6) & 0x3f);
        out[length++] = 0x80 | (codePoint & 0x3f);
        i++;
        continue;
      }
      code = 0xfffd;
    }
    out[length++] = 0xe0 | (code >> 12);
    out[length++] = 0x80 | ((code >> 6) & 0x3f);
    out[length++] = 0x80 | (code & 0x3f);
  }
  return length;
}

/**
 * The bytes a vocabulary entry stands for, as Hugging Face's ByteLevel decoder sees them: each character
 * mapped back through the alphabet, or, when any character lies outside it (added tokens such as space
 * runs), the entry's own UTF-8 bytes.
 */
export function tokenToBytes(token: string): Uint8Array {
  const bytes = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const code = token.charCodeAt(i);
    const byte = code < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[code] : -1;
    if (byte < 0) return Buffer.from(token, 'utf8');
    bytes[i] = byte;
  }
  return bytes;
}

/** The byte-level spelling of UTF-8 bytes (what the vocabulary stores). */
export function bytesToTokenString(bytes: Uint8Array, length: number): string {
  let token = '';
  for (let i = 0; i < length; i++) token += String.fromCharCode(BYTE_TO_CHAR[bytes[i]]);
  return token;
}
