"""The corpus build as datatrove pipeline steps and stages.

Stages (each a datatrove executor run; LocalPipelineExecutor by default, the same step lists run on datatrove's
RayPipelineExecutor (tested: tests/test_corpus_ray.py) or SlurmPipelineExecutor for a 25,000-text EEBO-TCP
build, see README):

  1 extract   sources (fetch + verify + extract + divide) -> clean -> quality filter -> extracted/ + exact sigs
  2 exact     find exact duplicates (one task)
  3 unique    drop exact duplicates -> unique/ + MinHash signatures
  4 buckets   MinHash LSH buckets (one task per bucket)
  5 cluster   MinHash clusters (one task)
  6 dedup     drop near duplicates -> <out>/{train,validation,test}/NNNNN.jsonl.gz + a text-free index

Each record's split (training/splits.py) is decided from the manifest before stage 1 and travels in the
document metadata, so every stage is a pure function of its input files: no stage reads what another
stage computed in the driver. Per-source errors and every rejected document go to JSONL side folders that
training/report.py reads.
"""
from __future__ import annotations

import re

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, \
    MinhashDedupSignature
from datatrove.pipeline.dedup.exact_dedup import ExactDedupConfig, ExactDedupFilter, ExactDedupSignature, \
    ExactFindDedups
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.formatters.base import BaseFormatter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

from training.clean import CleanConfig, clean_text, count_words, rejection_reason
from training.documents import DocumentConfig, make_documents
from training.extract import ExtractConfig, extract
from training.fetch import FetchConfig, fetch_source
from training.manifest import SourceError

SHARD = "${rank}.jsonl.gz"
# 5-word shingles, 14 bands x 8 rows: datatrove's defaults, which flag pairs above ~0.72 Jaccard
# similarity (P(match | s=0.8) = 0.92). sha1 shingle hashes: datatrove's default xxhash path passes str
# to xxhash, whose 4.x release refuses str ("Strings must be encoded before hashing").
MINHASH = MinhashConfig(hash_config=HashConfig(hash_fc="sha1", precision=64))


class SpaceWords(WordTokenizer):
    """Whitespace word splitter for MinHash shingles. datatrove's English tokenizer (and even its
    WhitespaceTokenizer) needs spaCy; MinHash only sees text that simplify_text has already lowercased
    and stripped of punctuation, so splitting on whitespace gives the same words."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n{2,}", text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, pos = [], 0
        for sent in self.sent_tokenize(text):
            start = text.index(sent, pos)
            spans.append((start, start + len(sent)))
            pos = start + len(sent)
        return spans


# ---------------------------------------------------------------- adapters (module level: picklable)
def _flat(self, doc: Document) -> dict:
    """Final output record: {id, text, ...metadata} on one level."""
    return {"id": doc.id, "text": doc.text, **doc.metadata}


def _reject(self, doc: Document) -> dict:
    m = doc.metadata
    return {"id": doc.id, "source_id": m.get("source_id"), "source": m.get("source"), "decade": m.get("decade"),
            "reason": m.get("filter_reason") or m.get("reject_reason"), "words": count_words(doc.text)}


INDEX_FIELDS = ("source_id", "source", "year", "decade", "license", "words", "chars", "split")


def _index(self, doc: Document) -> dict:
    """Text-free index row: enough to split and report without reading the documents again."""
    return {"id": doc.id, **{k: doc.metadata.get(k) for k in INDEX_FIELDS}}


def _error(self, doc: Document) -> dict:
    return dict(doc.metadata)


def _norm_text(doc: Document) -> bytes:
    """Exact-duplicate key: the text with case and whitespace folded (bytes: datatrove's xxhash wants them)."""
    return " ".join(doc.text.lower().split()).encode("utf-8")


EXACT = ExactDedupConfig(content_getter=_norm_text)


class _RejectAdapter:
    """Picklable adapter with a default reason (lambdas and closures do not cross process boundaries)."""

    def __init__(self, reason: str):
        self.reason = reason

    def __call__(self, writer, doc: Document) -> dict:
        doc.metadata.setdefault("reject_reason", self.reason)
        return _reject(writer, doc)


# ---------------------------------------------------------------- steps
class SourceReader(PipelineStep):
    """Reads this task's manifest records: fetch and verify files, extract, cut into documents.

    A source that fails (checksum, fetch, malformed file, ...) is written to errors/ and skipped; the
    other sources go on. Records are pre-sharded per task (balanced by bytes) by the driver."""

    type = "📖 - READER"
    name = "📜 dated sources"

    def __init__(self, shards: list[list[dict]], errors_folder: str, fetch: FetchConfig, extract_cfg: ExtractConfig,
                 docs: DocumentConfig):
        super().__init__()
        self.shards, self.fetch, self.extract_cfg, self.docs = shards, fetch, extract_cfg, docs
        self.errors = JsonlWriter(errors_folder, output_filename="${rank}.jsonl", compression=None, adapter=_error)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != len(self.shards):
            raise ValueError(f"SourceReader has {len(self.shards)} shards but the executor runs {world_size} tasks")
        with self.errors as errors:
            for rec in self.shards[rank]:
                with self.track_time():
                    try:
                        files = fetch_source(rec, self.fetch)
                        docs = make_documents(rec, extract(rec, files, self.extract_cfg), self.docs)
                    except SourceError as e:
                        err = e.as_dict()
                    except Exception as e:  # a bug or an odd file must not stop a 25k-source build
                        err = SourceError(rec["id"], "internal", f"{type(e).__name__}: {e}").as_dict()
                    else:
                        err = None
                if err is not None:
                    self.stat_update("source_errors")
                    errors.write(Document(text="", id=rec["id"], metadata=err), rank)
                    continue
                self.stat_update("sources")
                for d in docs:
                    self.stat_update("documents")
                    yield Document(text=d.pop("text"), id=d.pop("id"), metadata=d)


class Cleaner(BaseFormatter):
    name = "🧽 ftfy + NFC + whitespace"

    def __init__(self, keep_long_s: bool):
        super().__init__()
        self.keep_long_s = keep_long_s

    def format(self, text: str) -> str:
        return clean_text(text, self.keep_long_s)


class QualityFilter(BaseFilter):
    """Drops documents by training.clean.rejection_reason; kept ones get words/chars counts."""

    name = "🧐 length, language, legibility"

    def __init__(self, cfg: CleanConfig, gap_marker: str, exclusion_writer: JsonlWriter):
        super().__init__(exclusion_writer)
        self.cfg, self.gap_marker = cfg, gap_marker

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = rejection_reason(doc.text, self.cfg, self.gap_marker)
        if reason:
            return False, reason
        doc.metadata["words"] = count_words(doc.text)
        doc.metadata["chars"] = len(doc.text)
        return True


class RankReader(JsonlReader):
    """Reads exactly this task's own shard (NNNNN.jsonl.gz) of an earlier stage. Dedup filters address
    documents by their position in the task's stream, so a task must see the file its rank wrote, even
    when an earlier task wrote nothing (the default reader would shift files between ranks). It adds no
    `file_path`: that would put a path of the build's temporary work folder into every corpus document (it
    did, and it made two builds of the same manifest differ in every document)."""

    def __init__(self, data_folder, **kwargs):
        super().__init__(data_folder, add_file_path=False, **kwargs)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        name = f"{rank:05d}.jsonl.gz"
        if self.data_folder.exists(name):
            yield from self.read_files_shard([name])


# ---------------------------------------------------------------- stage step lists
def stage_extract(work: str, shards, fetch, extract_cfg, clean, docs) -> list[PipelineStep]:
    return [
        SourceReader(shards, f"{work}/errors", fetch, extract_cfg, docs),
        Cleaner(extract_cfg.keep_long_s),
        QualityFilter(clean, extract_cfg.gap_marker, exclusion_writer=JsonlWriter(f"{work}/rejects/quality", SHARD, adapter=_reject)),
        JsonlWriter(f"{work}/extracted", SHARD),
        ExactDedupSignature(f"{work}/exact_sigs", EXACT),
    ]


def stage_exact(work: str) -> list[PipelineStep]:
    return [ExactFindDedups(f"{work}/exact_sigs", f"{work}/exact_dups", EXACT)]


def stage_unique(work: str) -> list[PipelineStep]:
    return [
        RankReader(f"{work}/extracted"),
        ExactDedupFilter(f"{work}/exact_dups", EXACT,
                         exclusion_writer=JsonlWriter(f"{work}/rejects/exact", SHARD, adapter=_RejectAdapter(
                             "exact_duplicate"))),
        JsonlWriter(f"{work}/unique", SHARD),
        MinhashDedupSignature(f"{work}/mh_sigs", MINHASH, language=SpaceWords()),
    ]


def stage_buckets(work: str) -> list[PipelineStep]:
    return [MinhashDedupBuckets(f"{work}/mh_sigs", f"{work}/mh_buckets", config=MINHASH)]


def stage_cluster(work: str) -> list[PipelineStep]:
    return [MinhashDedupCluster(f"{work}/mh_buckets", f"{work}/mh_remove", config=MINHASH)]


def stage_dedup(work: str, out: str) -> list[PipelineStep]:
    """Last stage: drops near duplicates and writes the corpus itself, one folder per split (the split is in
    each document's metadata since stage 1), plus the text-free index the report is built from."""
    return [
        RankReader(f"{work}/unique"),
        MinhashDedupFilter(f"{work}/mh_remove", exclusion_writer=JsonlWriter(
            f"{work}/rejects/near", SHARD, adapter=_RejectAdapter("near_duplicate"))),
        JsonlWriter(out, "${split}/${rank}.jsonl.gz", adapter=_flat),
        JsonlWriter(f"{work}/index", "${rank}.jsonl", compression=None, adapter=_index),
    ]
