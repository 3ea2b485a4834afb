"""The corpus build end to end: real sources of every format, bad inputs, dedup, atomic output, CLI."""
import gzip
import hashlib
import json
import random

import pytest

import cli
from training.corpus import CorpusConfig, CorpusError, build_corpus, iter_documents, load_report
from engine.corpus_io import SPLITS
from training.manifest import ManifestError, Selection

WORDS = ("the and of to that is it with for was his he be not by but which this they shall will from have "
         "king towne church bread wine horse cloth silver market sermon law house street river bridge ship "
         "merchant widow servant letter money plague fire winter summer harvest parish court sword").split()


def english(seed: int, n: int = 400) -> str:
    rng = random.Random(seed)
    sents = [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(n // 12)]
    return "\n\n".join(" ".join(sents[i:i + 5]) for i in range(0, len(sents), 5))


def add_source(root, manifest, sid, content: bytes, fmt="text", year=1650, name=None, **extra):
    name = name or f"{sid}.txt"
    (root / name).write_bytes(content)
    rec = {"id": sid, "source": "test", "format": fmt, "title": sid, "author": "Anon", "year": year,
           "place": "London", "london": True, "license": "CC0-1.0", "attribution": "Not required.",
           "files": [{"path": name, "sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}],
           "upstream_urls": [], **extra}
    manifest.append(rec)
    return rec


def write_manifest(path, records, extra_lines=()):
    path.write_text("\n".join([json.dumps(r) for r in records] + list(extra_lines)) + "\n")
    return path


def build(tmp_path, manifest, mirror_dir, **kw):
    cfg = CorpusConfig(manifest=str(manifest), mirror=str(mirror_dir), out=str(tmp_path / "corpus"),
                       cache_dir=str(tmp_path / "cache"), workers=1, **kw)
    return build_corpus(cfg)


def no_partials(tmp_path):
    return not [p for p in tmp_path.iterdir() if any(m in p.name for m in (".partial-", ".tmp-", ".old-"))]


def test_bad_inputs_are_per_source_errors_and_the_build_goes_on(tmp_path, mirror):
    src = tmp_path / "src"
    src.mkdir()
    recs = []
    for i in range(4):
        add_source(src, recs, f"good{i}", english(i).encode(), year=1600 + 20 * i)
    tcp = json.loads((mirror / "sources.jsonl").read_text().splitlines()[0])
    corrupt = bytearray((mirror / tcp["files"][0]["path"]).read_bytes())
    corrupt[5000] ^= 1
    (src / "raw" / "tcp").mkdir(parents=True)
    (src / tcp["files"][0]["path"]).write_bytes(bytes(corrupt))
    recs.append({**tcp, "upstream_urls": []})  # one flipped bit in a mirrored file: a checksum error
    add_source(src, recs, "malformed", b"<TEI><text><body><p>unclosed", fmt="tcp-tei", name="bad.xml")
    add_source(src, recs, "binary", bytes(range(256)) * 40, name="bin.txt")
    add_source(src, recs, "empty", b"", name="empty.txt")
    bad = [json.dumps({**recs[0], "id": "future", "year": 3000}), json.dumps({**recs[0], "id": "nofmt", "format": "docx"}),
           json.dumps({"id": "nofiles", "title": "x", "year": 1600}), "{not json"]
    report = build(tmp_path, write_manifest(tmp_path / "m.jsonl", recs, bad), src)
    errors = {e["source"]: e for e in report["errors"]}
    assert errors[tcp["id"]]["kind"] == "checksum" and tcp["files"][0]["sha256"] in errors[tcp["id"]]["message"]
    assert errors["malformed"]["kind"] == "extract" and errors["binary"]["kind"] == "extract"
    assert errors["empty"]["kind"] == "extract"
    assert errors["future"]["kind"] == "manifest" and "year=3000" in errors["future"]["message"]
    assert errors["nofmt"]["kind"] == "format" and errors["nofiles"]["kind"] == "manifest"
    assert "line 12" in errors
    assert set(errors) == {tcp["id"], "malformed", "binary", "empty", "future", "nofmt", "nofiles", "line 12"}
    assert report["totals"]["texts_kept"] == 4 and no_partials(tmp_path)
    docs = [d for s in SPLITS for d in iter_documents(tmp_path / "corpus", s)]
    assert sorted(d["source_id"] for d in docs) == ["good0", "good1", "good2", "good3"]
    assert all(d["year"] and d["decade"] and d["license"] for d in docs)
    assert "## Source errors (8)" in (tmp_path / "corpus" / "report.md").read_text()


def test_exact_and_near_duplicates_are_removed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    recs = []
    base = english(1, 600)
    add_source(src, recs, "orig", base.encode(), year=1700)
    add_source(src, recs, "copy", ("  " + base.upper().replace(" ", "  ")).encode(), year=1710)
    words = base.split(" ")
    words[100] = words[300] = "LONDON"
    add_source(src, recs, "near", " ".join(words).encode(), year=1720)
    add_source(src, recs, "other", english(2, 600).encode(), year=1730)
    report = build(tmp_path, write_manifest(tmp_path / "m.jsonl", recs), src)
    assert report["rejects"]["exact_duplicate"]["documents"] == 1
    assert report["rejects"]["near_duplicate"]["documents"] == 1
    assert report["totals"]["documents"] == 2


def test_failed_build_keeps_the_previous_corpus(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    recs = []
    for i in range(3):
        add_source(src, recs, f"g{i}", english(10 + i).encode())
    manifest = write_manifest(tmp_path / "m.jsonl", recs)
    first = build(tmp_path, manifest, src)
    add_source(src, recs, "broken", b"\x00\x01\x02" * 100, name="broken.txt")
    with pytest.raises(CorpusError, match="--strict: 1 source error"):
        build(tmp_path, write_manifest(tmp_path / "m2.jsonl", recs), src, strict=True)
    assert load_report(tmp_path / "corpus")["fingerprint"] == first["fingerprint"] and no_partials(tmp_path)
    with pytest.raises(CorpusError, match="no source"):
        build(tmp_path, manifest, src, selection=Selection(year_from=1800))
    with pytest.raises(ManifestError):
        build(tmp_path, tmp_path / "nothing.jsonl", src)
    assert load_report(tmp_path / "corpus")["fingerprint"] == first["fingerprint"] and no_partials(tmp_path)


def test_real_sources_of_every_format(tmp_path, mirror):
    records = [json.loads(line) for line in (mirror / "sources.jsonl").read_text().splitlines()]
    pick = {}
    for r in sorted(records, key=lambda r: sum(f["bytes"] for f in r["files"])):
        pick.setdefault(r["format"], r)
    manifest = write_manifest(tmp_path / "m.jsonl", list(pick.values()))
    report = build(tmp_path, manifest, mirror)
    assert report["errors"] == [] and report["totals"]["texts_kept"] == 4
    out = tmp_path / "corpus"
    for split in SPLITS:
        for f in report["files"][split]:
            with gzip.open(out / f, "rt") as fh:
                for line in fh:
                    d = json.loads(line)
                    assert d["split"] == split and "<" not in d["text"] and ">" not in d["text"]
                    assert isinstance(d["year"], int) and d["decade"] == d["year"] // 10 * 10 and d["license"]
    assert any(a["required"] and "ELTeC" in a["text"] for a in report["attribution"])
    assert set(report["by_decade"]) == {str(r["decade"]) for r in pick.values()}


def test_cli_build_and_report(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    recs = []
    for i in range(3):
        add_source(src, recs, f"c{i}", english(20 + i).encode(), year=1820)
    manifest = write_manifest(tmp_path / "m.jsonl", recs)
    out = tmp_path / "out"
    assert cli.main(["corpus", "build", "--manifest", str(manifest), "--mirror", str(src), "--out", str(out),
                     "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["texts_kept"] == 3 and summary["errors"] == 0
    assert cli.main(["corpus", "report", str(out)]) == 0
    assert "| 1820s | 3 |" in capsys.readouterr().out
    assert cli.main(["corpus", "report", str(tmp_path / "nowhere")]) == 2
    assert "not a built corpus" in capsys.readouterr().err
    assert cli.main(["corpus", "build", "--manifest", str(tmp_path / "none.jsonl"), "--out", str(out)]) == 2
    assert "cannot read manifest" in capsys.readouterr().err
    assert cli.main(["corpus", "build", "--manifest", str(manifest), "--workers", "0", "--out", str(out)]) == 2
    assert "workers=0" in capsys.readouterr().err


@pytest.mark.slow
def test_full_build_meets_the_targets(full_corpus):
    """Acceptance: all 197 shared sources, 2 workers: >=190 texts, >=10M words, every decade 1500s-1840s."""
    report = load_report(full_corpus)
    t = report["totals"]
    assert t["texts_kept"] >= 190 and t["words"] >= 10_000_000, t
    assert t["documents_without_metadata"] == 0 and report["errors"] == []
    assert {str(d) for d in range(1500, 1850, 10)} <= set(report["by_decade"])
    assert all(v["documents"] >= 1 for v in report["splits"].values())
    # whole sources per split, and every century has validation and test sources
    split_of = {}
    for s in SPLITS:
        for d in iter_documents(full_corpus, s):
            assert split_of.setdefault(d["source_id"], s) == s, d["source_id"]
    for s in ("validation", "test"):
        assert set(report["split_sources"][s]["by_century"]) == {"1500", "1600", "1700", "1800"}, s
        assert {i for i, v in split_of.items() if v == s} <= set(report["split_assignment"][s])
