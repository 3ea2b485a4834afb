"""Source-disjoint, decade-stratified train/validation/test assignment (training/splits.py), and the corpus
build that applies it: every source lies in one split, decided before any text is read."""
import json

import pytest

from engine.corpus_io import SPLITS, iter_documents, load_report
from training.manifest import read_manifest
from training.splits import SplitConfig, assign_splits, split_counts


def recs(per_decade: dict[int, int], size: int = 1000) -> list[dict]:
    return [{"id": f"s{d}-{i}", "year": d + i % 10, "files": [{"bytes": size}]}
            for d, n in per_decade.items() for i in range(n)]


def test_assignment_is_a_pure_function_of_records_fractions_and_seed():
    rs = recs({d: 5 for d in range(1500, 1850, 10)})
    a = assign_splits(rs)
    assert a == assign_splits(list(reversed(rs)))  # order of the manifest does not matter
    assert a != assign_splits(rs, SplitConfig(seed=1))
    assert set(a) == {r["id"] for r in rs} and set(a.values()) == set(SPLITS)
    # 175 records: floor or ceil of fraction x n per held-out split
    for split, f in (("validation", 0.05), ("test", 0.05)):
        assert abs(sum(v == split for v in a.values()) - f * len(rs)) < 1
    b = assign_splits(rs, SplitConfig(val_fraction=0.2, test_fraction=0.1))
    assert abs(sum(v == "validation" for v in b.values()) - 35) < 1 and abs(sum(v == "test" for v in b.values()) - 17.5) < 1


def test_held_out_sources_spread_over_the_period_and_every_decade_trains():
    rs = recs({1500: 1, 1510: 2, 1520: 3, **{d: 4 for d in range(1530, 1850, 10)}})
    a = assign_splits(rs, SplitConfig(val_fraction=0.2, test_fraction=0.2))
    for d in {r["year"] // 10 * 10 for r in rs}:
        assert any(a[r["id"]] == "train" for r in rs if r["year"] // 10 * 10 == d), d
    assert a["s1500-0"] == "train"  # a decade's only source always trains
    # systematic sampling: any 10 consecutive decades (40 sources) hold 8 +- 1 of each held-out split
    for start in range(1530, 1750, 10):
        window = [r for r in rs if start <= r["year"] < start + 100]
        for split in ("validation", "test"):
            assert 7 <= sum(a[r["id"]] == split for r in window) <= 9, (start, split)


def test_a_record_far_bigger_than_the_rest_always_trains():
    rs = recs({d: 5 for d in range(1500, 1600, 10)})
    for seed in range(20):
        big = [{"id": "huge", "year": 1555, "files": [{"bytes": 10**7}]}]
        assert assign_splits(rs + big, SplitConfig(val_fraction=0.3, test_fraction=0.15, seed=seed))["huge"] == "train"


@pytest.mark.parametrize("kw, field", [({"val_fraction": 0.5}, "val_fraction"), ({"test_fraction": -0.1}, "test_fraction"),
                                       ({"val_fraction": 0.3, "test_fraction": 0.3}, "val_fraction \\+ test_fraction"),
                                       ({"max_size_ratio": 0.5}, "max_size_ratio")])
def test_bad_fractions_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        SplitConfig(**kw)


def test_shipped_manifest_every_century_has_validation_and_test_sources():
    records, errors = read_manifest("training/sources.jsonl")
    assert not errors and len(records) == 197
    counts = split_counts(assign_splits(records), records)
    assert counts["validation"]["sources"] == 10 and counts["test"]["sources"] == 10
    for split in ("validation", "test"):
        assert set(counts[split]["by_century"]) == {"1500", "1600", "1700", "1800"}, counts[split]


def test_built_corpus_is_source_disjoint_and_reports_its_assignment(tiny_corpus):
    report = load_report(tiny_corpus)
    split_of = {}
    for split in SPLITS:
        docs = list(iter_documents(tiny_corpus, split))
        assert docs, split  # 24 sources at 0.2 / 0.05: every split is used
        for d in docs:
            assert d["split"] == split and split_of.setdefault(d["source_id"], split) == split
    manifest = [json.loads(line) for line in (tiny_corpus.parent / "m.jsonl").read_text().splitlines()]
    cfg = report["config"]["split"]
    assert split_of == assign_splits(manifest, SplitConfig(**cfg))  # recorded config reproduces it
    for split in ("validation", "test"):
        assert report["split_assignment"][split] == sorted(i for i, s in split_of.items() if s == split)
        words = sum(v["words"] for v in report["by_split_decade"][split].values())
        assert words == report["splits"][split]["words"] > 0
