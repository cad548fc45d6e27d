/**
 * Tokenizer benchmark (`flash-mpt bench tokenizer`): encodes deterministic corpora of documents (English
 * prose, code, multilingual text, the test vectors), one document per call on one thread, with flash-mpt
 * and the peers that are installed; checks that every peer produces flash-mpt's ids; reports MB/s of
 * UTF-8 input and load time.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '../tokenizer';
import { seededRandom } from '../sampling/rng';

export interface TokenizerBenchOptions {
  tokenizerPath: string;
  /** Corpus size in UTF-8 bytes (default 2 MB; at least 1 MB is used). */
  corpusBytes?: number;
  /** Print one JSON object instead of the table. */
  json?: boolean;
}

export interface TokenizerBenchRow {
  name: string;
  status: 'ok' | 'not installed' | 'failed';
  /** First load of tokenizer.json in the process (cold), in ms. */
  loadMs?: number;
  /** Median of the per-round loads, in ms. */
  medianLoadMs?: number;
  /** Median over rounds of MB (10^6 UTF-8 bytes) encoded per second. */
  mbPerSecond?: number;
  roundMbPerSecond?: number[];
  /** Tokens of the first round's corpus. */
  tokens?: number;
  /** Documents (over all rounds) whose ids differ from flash-mpt's. */
  mismatchedDocuments?: number;
  error?: string;
}

export interface TokenizerBenchResult {
  tokenizerPath: string;
  rounds: number;
  /** Bytes and documents of each round's corpus. */
  corpusBytes: number;
  documents: number;
  rows: TokenizerBenchRow[];
  /** flash-mpt MB/s over the fastest peer's, when a peer ran. */
  speedupOverFastestPeer?: number;
}

const MIN_CORPUS_BYTES = 1_000_000;
const DEFAULT_CORPUS_BYTES = 2_000_000;
/** Warm-up text (another seed) so that every contender is timed with its code warmed up alike. */
const WARMUP_BYTES = 64_000;
/** Each round encodes its own corpus (another seed) with freshly loaded tokenizers. */
const ROUNDS = 3;

const ENGLISH_WORDS = (
  'the of and to a in is it you that he was for on are with as his they be at one have this from or had by ' +
  'word but what some we can out other were all there when up use your how said an each she which do their ' +
  'time if will way about many then them write would like so these her long make thing see him two has look ' +
  'more day could go come did number sound no most people my over know water than call first who may down ' +
  'side been now find any new work part take get place made live where after back little only round man year ' +
  'came show every good me give our under name very through just form sentence great think say help low line ' +
  'differ turn cause much mean before move right boy old too same tell does set three want air well also play ' +
  'small end put home read hand port large spell add even land here must big high such follow act why ask men ' +
  'change went light kind off need house picture try us again animal point mother world near build self earth ' +
  'father head stand own page should country found answer school grow study still learn plant cover food sun ' +
  'four between state keep eye never last let thought city tree cross farm hard start might story saw far sea ' +
  'draw left late run don\'t while press close night real life few north open seem together next white children ' +
  'begin got walk example ease paper group always music those both mark often letter until mile river car feet ' +
  'care second book carry took science eat room friend began idea fish mountain stop once base hear horse cut ' +
  'sure watch color face wood main enough plain girl usual young ready above ever red list though feel talk ' +
  'bird soon body dog family direct pose leave song measure door product black short numeral class wind ' +
  'question happen complete ship area half rock order fire south problem piece told knew pass since top whole ' +
  'king space heard best hour better true during hundred five remember step early hold west ground interest ' +
  'reach fast verb sing listen six table travel less morning ten simple several vowel toward war lay against ' +
  'pattern slow center love person money serve appear road map rain rule govern pull cold notice voice unit ' +
  'power town fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest ' +
  'correct able pound done beauty drive stood contain front teach week final gave green oh quick develop ocean ' +
  'warm free minute strong special mind behind clear tail produce fact street inch multiply nothing course stay ' +
  'wheel full force blue object decide surface deep moon island foot system busy test record boat common gold ' +
  'possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss brought heat snow ' +
  'tire bring yes distant fill east paint language among tokenizer attention kernel gradient transformer'
).split(' ');

const CODE_WORDS = 'const let return function if else for while import from export class new this await async value result index count buffer error options length push map filter state config token model'.split(' ');

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

/** Frequent words come up more often, roughly like real text (a Zipf-ish skew). */
function pickWord(random: () => number): string {
  const r = random();
  return ENGLISH_WORDS[Math.floor(r * r * ENGLISH_WORDS.length)];
}

function englishDocument(random: () => number, targetLength: number): string {
  let text = '';
  while (text.length < targetLength) {
    const words: string[] = [];
    const sentenceLength = 4 + Math.floor(random() * 18);
    for (let i = 0; i < sentenceLength; i++) {
      let word = pickWord(random);
      const r = random();
      if (r < 0.04) word = String(Math.floor(random() * 100000));
      else if (r < 0.06) word = `"${word}"`;
      else if (r < 0.09) word += ',';
      else if (r < 0.1) word = word.toUpperCase();
      words.push(word);
    }
    words[0] = words[0].charAt(0).toUpperCase() + words[0].slice(1);
    text += words.join(' ') + pick(random, ['. ', '. ', '. ', '? ', '! ', '.\n\n', '.\n']);
  }
  return text;
}

function codeDocument(random: () => number, targetLength: number): string {
  let text = '';
  let depth = 0;
  while (text.length < targetLength) {
    const indent = ' '.repeat(depth * pick(random, [2, 4]));
    const name = `${pick(random, CODE_WORDS)}${pick(random, ['', 'Id', 'Count', '_2', 'List'])}`;
    const r = random();
    if (r < 0.2 && depth < 5) {
      text += `${indent}if (${name} >= ${Math.floor(random() * 1000)}) {\n`;
      depth++;
    } else if (r < 0.35 && depth > 0) {
      depth--;
      text += `${' '.repeat(depth * 4)}}\n`;
    } else if (r < 0.5) {
      text += `${indent}// ${englishDocument(random, 30).trim()}\n`;
    } else {
      text += `${indent}${pick(random, CODE_WORDS)} ${name} = ${name}.${pick(random, CODE_WORDS)}(${Math.floor(random() * 64)}, '${pickWord(random)}');\n`;
    }
  }
  return text;
}

/** [first, last] code point ranges of scripts and symbols seen in multilingual text. */
const UNICODE_RANGES: readonly (readonly [number, number])[] = [
  [0x4e00, 0x9fff], // CJK ideographs
  [0x3040, 0x30ff], // kana
  [0xac00, 0xd7a3], // Hangul syllables
  [0x0410, 0x044f], // Cyrillic
  [0x0391, 0x03c9], // Greek
  [0x0621, 0x064a], // Arabic
  [0x0905, 0x0939], // Devanagari
  [0x00c0, 0x00ff], // accented Latin
  [0x1f300, 0x1f64f], // emoji
  [0x2000, 0x206f], // punctuation, odd spaces
];

function unicodeDocument(random: () => number, targetLength: number): string {
  let text = '';
  while (text.length < targetLength) {
    const [first, last] = pick(random, UNICODE_RANGES);
    const wordLength = 1 + Math.floor(random() * 8);
    for (let i = 0; i < wordLength; i++) text += String.fromCodePoint(first + Math.floor(random() * (last - first + 1)));
    text += random() < 0.3 ? ` ${pickWord(random)} ` : pick(random, [' ', ' ', '、', '。', ', ', '\n', '  ']);
  }
  return text;
}

/** Texts of the test vectors beside the tokenizer (real prose and edge cases), when present. */
function vectorTexts(tokenizerPath: string): string[] {
  const texts: string[] = [];
  for (const name of ['vectors.json', 'public-vectors.json']) {
    const file = path.join(path.dirname(tokenizerPath), name);
    if (!fs.existsSync(file)) continue;
    const cases = (JSON.parse(fs.readFileSync(file, 'utf8')) as { cases?: { text?: unknown }[] }).cases ?? [];
    for (const c of cases) if (typeof c.text === 'string' && c.text.length > 0) texts.push(c.text);
  }
  return texts;
}

/** Documents of 0.5-6 KB: mostly English prose, then code, multilingual text and the vector texts. */
export function buildCorpus(targetBytes: number, seed: number, extraTexts: readonly string[] = []): string[] {
  const random = seededRandom(seed);
  const documents: string[] = [];
  let bytes = 0;
  let extraIndex = 0;
  while (bytes < targetBytes) {
    const length = 500 + Math.floor(random() * 5500);
    const r = random();
    let document: string;
    if (r < 0.05 && extraTexts.length > 0) document = extraTexts[extraIndex++ % extraTexts.length];
    else if (r < 0.65) document = englishDocument(random, length);
    else if (r < 0.85) document = codeDocument(random, length);
    else document = unicodeDocument(random, length / 2);
    documents.push(document);
    bytes += Buffer.byteLength(document, 'utf8');
  }
  return documents;
}

interface Contender {
  name: string;
  /** Loads the tokenizer; returns a synchronous or asynchronous encoder, or undefined when not installed. */
  load(tokenizerPath: string): Promise<((text: string) => number[] | Promise<number[]>) | undefined>;
}

function optionalRequire(name: string): unknown {
  try {
    return require(name) as unknown;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw err;
  }
}

const CONTENDERS: readonly Contender[] = [
  {
    name: 'flash-mpt',
    async load(tokenizerPath) {
      const tokenizer = await Tokenizer.fromFile(tokenizerPath);
      return (text) => tokenizer.encode(text);
    },
  },
  {
    name: '@anush008/tokenizers (HF Rust)',
    async load(tokenizerPath) {
      const module = optionalRequire('@anush008/tokenizers') as
        | { Tokenizer: { fromFile(file: string): { encode(text: string): Promise<{ getIds(): number[] }> } } }
        | undefined;
      if (module === undefined) return undefined;
      const tokenizer = module.Tokenizer.fromFile(tokenizerPath);
      return async (text) => (await tokenizer.encode(text)).getIds();
    },
  },
  {
    name: '@huggingface/tokenizers',
    async load(tokenizerPath) {
      type HfTokenizer = { encode(text: string): { ids: number[] } | number[] };
      const module = optionalRequire('@huggingface/tokenizers') as
        | { Tokenizer: new (json: unknown, config: unknown) => HfTokenizer }
        | undefined;
      if (module === undefined) return undefined;
      const json = JSON.parse(await fs.promises.readFile(tokenizerPath, 'utf8')) as unknown;
      const configPath = path.join(path.dirname(tokenizerPath), 'tokenizer_config.json');
      const config = fs.existsSync(configPath) ? (JSON.parse(fs.readFileSync(configPath, 'utf8')) as unknown) : {};
      const tokenizer = new module.Tokenizer(json, config);
      return (text) => {
        const encoded = tokenizer.encode(text);
        return Array.isArray(encoded) ? encoded : Array.from(encoded.ids);
      };
    },
  },
];

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await work();
  return [value, performance.now() - start];
}

interface ContenderRun {
  contender: Contender;
  row: TokenizerBenchRow;
  roundLoadMs: number[];
  roundMbPerSecond: number[];
}

export function formatTokenizerBench(result: TokenizerBenchResult): string {
  const lines = [
    `Tokenizer: ${result.tokenizerPath}`,
    `Corpus: ${result.rounds} rounds of ${result.documents} documents, ${(result.corpusBytes / 1e6).toFixed(2)} MB (UTF-8) each, ` +
      'a fresh tokenizer per round, one document per call, single thread',
    '',
    '| tokenizer | load ms (first / median) | MB/s (median of rounds) | MB/s each round | tokens per round | documents with other ids than flash-mpt |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of result.rows) {
    if (row.status !== 'ok') {
      lines.push(`| ${row.name} | ${row.status}${row.error ? `: ${row.error}` : ''} | | | | |`);
      continue;
    }
    lines.push(
      `| ${row.name} | ${row.loadMs!.toFixed(0)} / ${row.medianLoadMs!.toFixed(0)} | ${row.mbPerSecond!.toFixed(2)} | ` +
        `${row.roundMbPerSecond!.map((v) => v.toFixed(2)).join(', ')} | ${row.tokens} | ${row.mismatchedDocuments} |`,
    );
  }
  if (result.speedupOverFastestPeer !== undefined) {
    lines.push('', `flash-mpt is ${result.speedupOverFastestPeer.toFixed(1)}x the fastest peer.`);
  }
  return lines.join('\n');
}

/**
 * Runs the benchmark, prints the table (or JSON), and returns the numbers. Each contender is loaded
 * once cold (the load an application sees) and warmed up on a separate text; then every round loads it
 * afresh (empty caches) and encodes that round's corpus, contenders taking turns in alternating order
 * so that a noisy machine penalizes them alike. Throughput is the median over rounds.
 */
export async function runTokenizerBench(opts: TokenizerBenchOptions): Promise<TokenizerBenchResult> {
  const targetBytes = Math.max(MIN_CORPUS_BYTES, opts.corpusBytes ?? DEFAULT_CORPUS_BYTES);
  const extraTexts = vectorTexts(opts.tokenizerPath);
  const corpora = Array.from({ length: ROUNDS }, (_, round) => buildCorpus(targetBytes, round + 1, extraTexts));
  const warmup = buildCorpus(WARMUP_BYTES, 1000);
  const corpusBytes = (corpus: readonly string[]): number => corpus.reduce((sum, document) => sum + Buffer.byteLength(document, 'utf8'), 0);

  const runs: ContenderRun[] = [];
  for (const contender of CONTENDERS) {
    const run: ContenderRun = { contender, row: { name: contender.name, status: 'ok', tokens: 0, mismatchedDocuments: 0 }, roundLoadMs: [], roundMbPerSecond: [] };
    runs.push(run);
    try {
      const [encode, loadMs] = await timed(() => contender.load(opts.tokenizerPath));
      if (encode === undefined) {
        run.row.status = 'not installed';
        continue;
      }
      run.row.loadMs = loadMs;
      for (const document of warmup) await encode(document);
    } catch (err) {
      run.row = { name: contender.name, status: 'failed', error: (err as Error).message };
    }
  }

  for (let round = 0; round < ROUNDS; round++) {
    const corpus = corpora[round];
    const bytes = corpusBytes(corpus);
    const idsByContender = new Map<ContenderRun, number[][]>();
    const order = round % 2 === 0 ? runs : [...runs].reverse();
    for (const run of order) {
      if (run.row.status !== 'ok') continue;
      try {
        const [encode, loadMs] = await timed(() => run.contender.load(opts.tokenizerPath));
        const ids: number[][] = [];
        const [, encodeMs] = await timed(async () => {
          for (const document of corpus) ids.push(await encode!(document));
        });
        run.roundLoadMs.push(loadMs);
        run.roundMbPerSecond.push(bytes / 1e6 / (encodeMs / 1000));
        idsByContender.set(run, ids);
      } catch (err) {
        run.row = { name: run.contender.name, status: 'failed', error: (err as Error).message };
      }
    }
    const expected = idsByContender.get(runs[0]);
    for (const [run, ids] of idsByContender) {
      if (round === 0) run.row.tokens = ids.reduce((sum, docIds) => sum + docIds.length, 0);
      if (expected !== undefined) run.row.mismatchedDocuments! += ids.filter((docIds, i) => !sameIds(docIds, expected[i])).length;
    }
  }

  for (const run of runs) {
    if (run.row.status !== 'ok') continue;
    run.row.medianLoadMs = median(run.roundLoadMs);
    run.row.roundMbPerSecond = run.roundMbPerSecond;
    run.row.mbPerSecond = median(run.roundMbPerSecond);
  }
  const rows = runs.map((run) => run.row);
  const ours = rows[0].mbPerSecond;
  const fastestPeer = Math.max(0, ...rows.slice(1).map((row) => row.mbPerSecond ?? 0));
  const result: TokenizerBenchResult = {
    tokenizerPath: opts.tokenizerPath,
    rounds: ROUNDS,
    corpusBytes: corpusBytes(corpora[0]),
    documents: corpora[0].length,
    rows,
    speedupOverFastestPeer: ours !== undefined && fastestPeer > 0 ? ours / fastestPeer : undefined,
  };
  console.log(opts.json ? JSON.stringify(result) : formatTokenizerBench(result));
  return result;
}
