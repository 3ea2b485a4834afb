"""Tokenizer of the engine: byte-level BPE training, the saved folder format, control tokens and encoding.

Owns: the control tokens (<|endoftext|> between documents, one era token per decade 1500s-1850s and
<|unknown-era|>), training a byte-level BPE with the `tokenizers` library and saving it atomically as a
`transformers` tokenizer folder (tokenizer.json + tokenizer_config.json + anno_tokenizer.json), loading it,
its content hash for cache invalidation, document/prompt encoding, the quality report (fertility, bytes per
token, round trips, archaic words, what the normaliser maps) and the old project's lossy recipe kept only for
comparison.

The tokenizer.json carries the corpus's own normalisation (engine/normalize.py: long s, ligatures, vv, curly
quotes, invisible characters, spaces, NFC) as its normalizer, so stock `AutoTokenizer` users get the text the
model was trained on. After it, byte-level BPE is lossless: every string is UTF-8 bytes, every byte is in the
base alphabet, and decode concatenates bytes back, so decode(encode(x)) == x for every normalised x. Folders
saved before the normalizer existed (normalizer null) load as they are; `encode_prompt` normalises in Python
for every tokenizer. The seed recipe (NFD + StripAccents, whitespace and punctuation split) is lossy: it
drops accents and newlines and rejoins pieces with spaces.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from engine.atomic import atomic_dir
from engine.normalize import NormalizeConfig, apply_rules, normalize, rule_counts, rules, tokenizer_normalizer

ERA_DECADES: tuple[int, ...] = tuple(range(1500, 1860, 10))
EOT = "<|endoftext|>"
UNKNOWN_ERA = "<|unknown-era|>"
ERA_TOKENS: tuple[str, ...] = tuple(f"<|{d}s|>" for d in ERA_DECADES)
# Order fixes the ids: EOT = 0, <|1500s|> = 1 ... <|1850s|> = 36, <|unknown-era|> = 37, in every tokenizer
# trained here (the BPE trainer assigns special tokens first, in list order).
SPECIAL_TOKENS: tuple[str, ...] = (EOT, *ERA_TOKENS, UNKNOWN_ERA)
BYTE_ALPHABET_SIZE = 256
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + BYTE_ALPHABET_SIZE  # 294: below this the trainer silently grows the vocab
MAX_VOCAB_SIZE = 1_000_000
ANNO_FILE = "anno_tokenizer.json"
FORMAT = "anno-tokenizer/1"
ARCHAIC_WORDS_FILE = Path(__file__).with_name("archaic_words.txt")
SEED_UNK = "[UNK]"
# "Words" for fertility are runs of Unicode letters (ſ and accented letters included, digits/underscore not).
_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class TokenizerConfig:
    """Training settings. 32,000 is the default vocabulary; small presets may use 8,000.

    Sanity figure (7.5 MB of tag-stripped mirror text, 32k): 1.41 tokens per word and 4.7 bytes per token on
    2.7 MB of held-out text, 86 of 173 archaic/London words single tokens; training took 2.8 s on 2 cores.
    """

    vocab_size: int = 32000
    min_frequency: int = 2
    # The text normalisation written into tokenizer.json; None: no normalizer (bytes in = bytes out).
    normalize: NormalizeConfig | None = NormalizeConfig()

    def __post_init__(self):
        _check_vocab_size(self.vocab_size)
        if self.normalize is not None and not isinstance(self.normalize, NormalizeConfig):
            raise ValueError(f"normalize must be a NormalizeConfig or None, got {self.normalize!r}")
        if isinstance(self.min_frequency, bool) or not isinstance(self.min_frequency, int) or self.min_frequency < 1:
            raise ValueError(f"min_frequency must be an integer >= 1, got {self.min_frequency!r}")


def _check_vocab_size(vocab_size) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not MIN_VOCAB_SIZE <= vocab_size <= MAX_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be an integer in [{MIN_VOCAB_SIZE}, {MAX_VOCAB_SIZE}] (minimum = {len(SPECIAL_TOKENS)} "
            f"control tokens + {BYTE_ALPHABET_SIZE} byte alphabet), got {vocab_size!r}"
        )


def era_token(year: int | None) -> str:
    """The decade token for a year: 1500-1859 -> "<|1500s|>" ... "<|1850s|>"; None or out of range -> unknown."""
    if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
        raise TypeError(f"year must be an int or None, got {year!r}")
    if year is None or not ERA_DECADES[0] <= year < ERA_DECADES[-1] + 10:
        return UNKNOWN_ERA
    return f"<|{year // 10 * 10}s|>"


# ---------------------------------------------------------------------------------------------- training


# GPT-2's pre-tokenizer pattern with one change for period English: an apostrophe inside a word, or in
# front of a lower-case letter, belongs to the word. GPT-2's rule splits off only the modern contractions
# ('s 't 're 've 'm 'll 'd), so " 'tis" (1,614 times in the shipped corpus), " 'twas" (198) and "o'er"
# could never become one token. A quote mark before a capital (" 'Good morrow") still stands alone.
PRETOKENIZE = r" ?(?:'(?=\p{Ll}))?\p{L}+(?:'\p{L}+)*| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def _byte_level_bpe(norm: NormalizeConfig | None = None) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if norm is not None:
        tok.normalizer = tokenizer_normalizer(norm)
    # Split then bytes: the pattern sees Unicode letters (ſ, é), ByteLevel then maps every byte losslessly.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok  # no post-processor: nothing is appended


def _train_bpe(texts: Iterable[str], cfg: TokenizerConfig, stats: dict | None = None) -> Tokenizer:
    tok = _byte_level_bpe(cfg.normalize)
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen in training or not
        show_progress=False,
    )
    tok.train_from_iterator(_counted(texts, stats if stats is not None else {}), trainer=trainer)
    return tok


def _counted(texts: Iterable[str], stats: dict) -> Iterator[str]:
    stats.update(documents=0, chars=0)
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must yield str, got {type(text).__name__}")
        stats["documents"] += 1
        stats["chars"] += len(text)
        yield text


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        pad_token=EOT,
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),  # so skip_special_tokens also drops era tokens
        # cleanup rewrites " ," to "," and breaks round trips; transformers 5.23 already skips it for BPE, the
        # saved tokenizer_config.json says False explicitly so other versions/loaders do the same
        clean_up_tokenization_spaces=False,
    )


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, out_dir: str | Path) -> PreTrainedTokenizerFast:
    """Train on an iterable of document texts and save the folder at out_dir atomically; return it loaded."""
    if not isinstance(cfg, TokenizerConfig):
        raise TypeError(f"cfg must be a TokenizerConfig, got {type(cfg).__name__}")
    stats: dict = {}
    backend = _train_bpe(texts, cfg, stats)
    if stats["documents"] == 0:
        raise ValueError("texts is empty: the tokenizer needs at least one document to train on")
    _save_atomic(_wrap(backend), cfg, stats, Path(out_dir))
    return load_tokenizer(out_dir)


def _save_atomic(tok: PreTrainedTokenizerFast, cfg: TokenizerConfig, stats: dict, out: Path) -> None:
    """Write into a temp folder beside out, then rename it into place (engine/atomic.atomic_dir): readers see
    the old folder or the new, and a full disk leaves the old one as it was."""
    with atomic_dir(out, what=f"the tokenizer {out}") as tmp:
        tok.save_pretrained(str(tmp))
        meta = {
            "format": FORMAT,
            "config": asdict(cfg),
            "tokenizer_sha256": tokenizer_hash(tmp),
            "vocab_size": len(tok),
            "special_tokens": {t: tok.backend_tokenizer.token_to_id(t) for t in SPECIAL_TOKENS},
            "trained_on": stats,
        }
        (tmp / ANNO_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Open a saved tokenizer folder (or any local transformers tokenizer folder) with AutoTokenizer."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {path}: not a tokenizer folder (train_tokenizer writes one)")
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.clean_up_tokenization_spaces = False  # also for folders written elsewhere: decode must stay lossless
    return tok


def tokenizer_hash(path: str | Path) -> str:
    """sha256 (hex) of tokenizer.json's bytes; path is the folder or the file itself."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}")
    return hashlib.sha256(file.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- encoding


def _backend(tok) -> Tokenizer:
    return tok if isinstance(tok, Tokenizer) else tok.backend_tokenizer


def _ids(tok, text: str) -> list[int]:
    return _backend(tok).encode(text, add_special_tokens=False).ids


def _eot_id(tok) -> int:
    eot = _backend(tok).token_to_id(EOT)
    if eot is None:
        eot = getattr(tok, "eos_token_id", None)
    if eot is None:
        raise ValueError(f"tokenizer has neither {EOT} nor an eos token: cannot mark document ends")
    return eot


def _era_id(tok, year: int | None) -> int | None:
    """The era token id for year, or None when the tokenizer has no era tokens (e.g. a foreign tokenizer)."""
    return _backend(tok).token_to_id(era_token(year))


def encode_document(tok, text: str, year: int | None) -> list[int]:
    """[era token id] + ids(text) + [eot id]; the era id is left out only if the tokenizer has no era tokens."""
    era = _era_id(tok, year)
    return ([] if era is None else [era]) + _ids(tok, text) + [_eot_id(tok)]


def prompt_normalization(tok) -> NormalizeConfig:
    """The normalisation a tokenizer's training text had: the default one, or keep_long_s when its own
    normalizer leaves ſ alone (a keep-long-s corpus). Old folders without a normalizer get the default."""
    norm = _backend(tok).normalizer
    if norm is not None and norm.normalize_str("\u017f") == "\u017f":
        return NormalizeConfig(keep_long_s=True)
    return NormalizeConfig()


def encode_prompt(tok, text: str, year: int | None = None) -> list[int]:
    """ids(normalised text), preceded by the era token when year is given and the tokenizer has era tokens;
    never eot. The text goes through engine.normalize first (mojibake repair as well as the table the
    tokenizer's own normalizer holds), so a raw early-modern prompt reads as the corpus did."""
    era = _era_id(tok, year) if year is not None else None
    return ([] if era is None else [era]) + _ids(tok, normalize(text, prompt_normalization(tok)))


# ---------------------------------------------------------------------------------------------- reports


def archaic_words(path: str | Path = ARCHAIC_WORDS_FILE) -> list[str]:
    """The words of archaic_words.txt (comments and blank lines skipped, duplicates dropped, order kept)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return list(dict.fromkeys(s for s in (ln.strip() for ln in lines) if s and not s.startswith("#")))


def _decode(tok, ids: list[int]) -> str:
    if isinstance(tok, Tokenizer):
        return tok.decode(ids, skip_special_tokens=False)
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def tokenizer_report(tok, texts: Sequence[str], words: Sequence[str] | None = None) -> dict:
    """Fertility, bytes per token, round-trip failures over texts; single-token check of words (default: the
    archaic list); what the normaliser maps in texts (matches per rule). tok is a transformers tokenizer or a
    bare tokenizers.Tokenizer (the seed recipe). A round trip must give back the text as engine.normalize's
    table leaves it (the text itself when it is already normal, as corpus text is)."""
    texts = list(texts)
    words = archaic_words() if words is None else list(words)
    encodings = _backend(tok).encode_batch(texts, add_special_tokens=False)  # parallel over texts
    n_tokens = sum(len(e.ids) for e in encodings)
    n_words = sum(len(_WORD.findall(t)) for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    cfg = prompt_normalization(tok)
    failures = sum(_decode(tok, e.ids) != apply_rules(t, cfg) for e, t in zip(encodings, texts))
    pieces = {w: len(_ids(tok, " " + w)) for w in words}
    single = [w for w, n in pieces.items() if n == 1]
    return {
        "texts": len(texts),
        "words": n_words,
        "tokens": n_tokens,
        "bytes": n_bytes,
        "fertility": n_tokens / n_words if n_words else None,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else None,
        "round_trip_failures": failures,
        "normalizer": _normalizer_report(tok, texts),
        "archaic": {
            "checked": len(pieces),
            "single_token": single,
            "single_token_fraction": len(single) / len(pieces) if pieces else None,
            "tokens_per_word": pieces,
        },
    }


def _normalizer_report(tok, texts: list[str]) -> dict | None:
    """The rules of our normaliser and their matches in texts; None for a tokenizer without it (the seed's
    NFD + StripAccents is reported by its round-trip failures instead). On a corpus built by this pipeline
    the counts are 0: the corpus was normalised by the same table (a non-zero count means it was not)."""
    if _backend(tok).normalizer is None or isinstance(tok, Tokenizer):
        return None
    cfg = prompt_normalization(tok)
    return {"rules": {r.name: r.what for r in rules(cfg)}, "keep_long_s": cfg.keep_long_s,
            "counts": rule_counts(texts, cfg)}


def seed_recipe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """The old project's recipe, for comparison only: BPE over whitespace+punctuation splits of NFD text with
    accents stripped, no decoder (so decode joins tokens with spaces), [UNK] for characters it never saw."""
    _check_vocab_size(vocab_size)  # same range as ours: the comparison is at equal size
    tok = Tokenizer(models.BPE(unk_token=SEED_UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[SEED_UNK, *SPECIAL_TOKENS], show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def compare_with_seed(ours, train_texts: Iterable[str], val_texts: Iterable[str]) -> dict:
    """Train the seed recipe on the same texts at our tokenizer's vocab size; report both on val_texts."""
    train_texts, val_texts = list(train_texts), list(val_texts)
    seed = seed_recipe_tokenizer(train_texts, len(ours))
    ours_report, seed_report = tokenizer_report(ours, val_texts), tokenizer_report(seed, val_texts)
    return {
        "vocab_size": len(ours),
        "train_texts": len(train_texts),
        "val_texts": len(val_texts),
        "ours": ours_report,
        "seed": seed_report,
        "seed_round_trip_failures": seed_report["round_trip_failures"],
    }
