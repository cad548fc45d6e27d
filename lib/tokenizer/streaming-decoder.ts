/**
 * Incremental detokenizer: text becomes available as ids arrive, and a character whose UTF-8 bytes span
 * several tokens is held back until it is complete. The concatenation of every `push` and the final
 * `flush` equals `tokenizer.decode(allIds)`.
 */
export interface StreamingDecoder {
  /** Adds one id; returns the text that is now complete (possibly ''). */
  push(id: number): string;
  /** Ends the stream: returns what is held back (incomplete bytes become U+FFFD) and resets. */
  flush(): string;
}

/**
 * WHATWG's streaming UTF-8 decoder replaces each maximal invalid subsequence with one U+FFFD exactly when
 * a one-shot decode would (the same rule as Rust's `from_utf8_lossy`, which Hugging Face applies to the
 * whole byte string), so streaming never changes the text. `ignoreBOM` keeps a leading U+FEFF, as Rust does.
 */
export class Utf8StreamingDecoder implements StreamingDecoder {
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

  /** `bytesOf` validates the id and returns its bytes, or undefined for an id to skip. */
  constructor(private readonly bytesOf: (id: number) => Uint8Array | undefined) {}

  push(id: number): string {
    const bytes = this.bytesOf(id);
    return bytes === undefined ? '' : this.utf8.decode(bytes, { stream: true });
  }

  flush(): string {
    return this.utf8.decode();
  }
}
