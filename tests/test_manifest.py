"""Manifest reading: the shipped manifest is valid; bad lines become per-source errors; bad files are fatal."""
import json

import pytest

from training.manifest import ManifestError, Selection, read_manifest

GOOD = {"id": "X1", "title": "T", "year": 1600, "format": "text", "license": "CC0-1.0",
        "files": [{"path": "a.txt", "sha256": "0" * 64, "bytes": 3}]}


def test_shipped_manifest_is_the_shared_one(mirror):
    records, errors = read_manifest("training/sources.jsonl")
    assert len(records) == 197 and errors == []
    shared = [json.loads(line)["id"] for line in open(mirror / "sources.jsonl")]
    assert [r["id"] for r in records] == shared
    assert all(r["decade"] == r["year"] // 10 * 10 for r in records)


def test_bad_lines_are_per_source_errors(tmp_path):
    lines = [GOOD, {**GOOD, "id": "X2", "year": 3000}, {k: v for k, v in GOOD.items() if k != "license"} | {"id": "X3"},
             {**GOOD, "id": "X4", "format": "docx"}, {**GOOD, "id": "X1"}, "not json {", [1, 2]]
    p = tmp_path / "m.jsonl"
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    records, errors = read_manifest(p)
    assert [r["id"] for r in records] == ["X1"]
    msgs = {e.source_id: (e.kind, e.message) for e in errors}
    assert msgs["X2"][0] == "manifest" and "year=3000" in msgs["X2"][1] and "1000..2100" in msgs["X2"][1]
    assert "license" in msgs["X3"][1]
    assert msgs["X4"][0] == "format" and "docx" in msgs["X4"][1] and "tcp-tei" in msgs["X4"][1]
    assert "line 6" in msgs and "not valid JSON" in msgs["line 6"][1]
    assert "not a JSON object" in msgs["line 7"][1]
    assert any("repeats id" in m for _, m in msgs.values())


@pytest.mark.parametrize("content,needle", [(b"\x89PNG\x00\x01\xff\xfe", "not UTF-8"), (b"hello\nworld\n", "no JSON"),
                                            (b"", "no JSON")])
def test_unusable_manifest_is_fatal(tmp_path, content, needle):
    p = tmp_path / "m.jsonl"
    p.write_bytes(content)
    with pytest.raises(ManifestError, match=needle):
        read_manifest(p)
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(tmp_path / "missing.jsonl")


def test_selection():
    recs = [{**GOOD, "id": "a", "year": 1550, "london": True, "source": "EEBO-TCP"},
            {**GOOD, "id": "b", "year": 1700, "london": False, "source": "ECCO-TCP"}]
    keep = lambda s: [r["id"] for r in recs if s.keeps(r)]  # noqa: E731
    assert keep(Selection(year_from=1600)) == ["b"]
    assert keep(Selection(year_to=1600)) == ["a"]
    assert keep(Selection(london_only=True)) == ["a"]
    assert keep(Selection(sources=("ECCO-TCP",))) == ["b"]
    assert keep(Selection(sources=("a",))) == ["a"]
    with pytest.raises(ValueError, match="year_from=1700 is after year_to=1600"):
        Selection(year_from=1700, year_to=1600)
    with pytest.raises(ValueError, match="year_to=3000"):
        Selection(year_to=3000)
