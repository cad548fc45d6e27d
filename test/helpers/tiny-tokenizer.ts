/** A small byte-level BPE tokenizer.json built in code, so tokenizer tests need no shared data. */
import { BYTE_TO_CHAR } from '../../lib/tokenizer/byte-level';

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const MERGES = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'Ġwor l', 'Ġworl d'];

/** 256 byte tokens, the merges above (making "hello" and "Ġworld"), and two special tokens. */
export function tinyTokenizerJson(): Json {
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((char) => {
    vocab[String.fromCharCode(char)] = Object.keys(vocab).length;
  });
  for (const merge of MERGES) vocab[merge.replace(' ', '')] = Object.keys(vocab).length;
  const special = (id: number, content: string) => ({ id, content, special: true, single_word: false, lstrip: false, rstrip: false, normalized: false });
  const size = Object.keys(vocab).length;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(size, '<|endoftext|>'), special(size + 1, '<eos>')],
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, vocab, merges: [...MERGES] },
  };
}
