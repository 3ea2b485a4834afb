"""Tests for training/extract.py (with extract_tei.py, extract_xhtml.py): known passages of real mirror
files, synthetic TEI for the transcription rules, and bad inputs that must raise SourceError."""
from __future__ import annotations

import json
import re
import time

import pytest

from training.extract import Division, ExtractConfig, extract
from training.manifest import SourceError

GAP = ExtractConfig().gap_marker
LEAKS = ("Creative Commons", "Standard Ebooks", "public domain", "Moby", "Bosak")
_cache: dict = {}


@pytest.fixture(scope="module")
def records(mirror):
    return {r["id"]: r for r in map(json.loads, (mirror / "sources.jsonl").read_text("utf-8").splitlines())}


@pytest.fixture(scope="module")
def divs(records, mirror):
    """divs(id, **config) -> the record's divisions (cached: each real file is extracted once)."""
    def get(sid: str, **cfg) -> list[Division]:
        key = (sid, tuple(sorted(cfg.items())))
        if key not in _cache:
            rec = records[sid]
            _cache[key] = extract(rec, {f["path"]: mirror / f["path"] for f in rec["files"]}, ExtractConfig(**cfg))
        return _cache[key]
    return get


def text(d: list[Division]) -> str:
    return "\n\n".join(x.text for x in d)


def test_marginal_notes_dropped_main_text_kept(divs):
    t = text(divs("A22612"))
    # <p>THe .xix. article ... confesse,<note place="margin">The .19 Article of the cause of synne.</note> that
    assert "THe .xix. article our aduersaries receyue in whiche we confesse, that althoughe" in t
    assert "The .19 Article" not in t and "1. cor. 11 mat. 26" not in t


@pytest.mark.parametrize("sid, opening", [
    ("A00895", "Here begynneth a ryght frutefull mater: and hath to name the boke of surueyeng"),
    ("ELTeC-ENG18471_Bronte", "I have just returned from a visit to my landlord"),
    ("SE-jane-austen_emma", "Emma Woodhouse, handsome, clever, and rich, with a comfortable home"),
    ("NLTK-shakespeare-hamlet", "BERNARDO\nWho's there?\n\nFRANCISCO\nNay, answer me: stand, and unfold yourself."),
])
def test_known_opening_present(divs, sid, opening):
    assert opening in text(divs(sid)[:3])


@pytest.mark.parametrize("sid", ["A01994", "A18687", "K075995.000", "ELTeC-ENG18400_Trollope",
                                 "ELTeC-ENG18500_Ainsworth", "SE-jane-austen_emma", "SE-samuel-pepys_the-diary",
                                 "SE-lord-byron_don-juan", "NLTK-shakespeare-r_and_j", "NLTK-shakespeare-dream"])
def test_no_markup_licence_or_markers_leak(divs, sid):
    d = divs(sid)
    t = text(d) + "".join(x.title for x in d)
    assert "<" not in t and ">" not in t
    assert not [w for w in LEAKS if w.lower() in t.lower()]
    assert not re.search("[\ufdd0-\ufdd5\u2060]", t)  # walker markers, SE word joiners
    assert all(x.text and x.text == x.text.strip() and "  " not in x.text and " \n" not in x.text for x in d)


def test_long_s_mapping_and_keep_long_s(divs):
    assert "Omnis sapientia virtus" in text(divs("A00895"))
    kept = text(divs("A00895", keep_long_s=True))
    assert "Omnis ſapientia virtus" in kept and "Omnis sapientia" not in kept


def test_eol_hyphens_join_words(divs):
    t = text(divs("A00895"))
    # co<g ref="char:EOLunhyphen"/>uerynges ... y<hi rend="sup">e</hi> wal<g ref="char:EOLhyphen"/>les
    assert "or other of couerynges is worthe by the yere / aswell within the walles as without" in t
    # tena<g ref="char:cmbAbbrStroke">̄</g>\n   <g ref="char:EOLhyphen"/>tes: join across the newline, then
    # the macron before t reads n
    assert "poore fermers and tenantes / and called it" in t


def test_gap_marker_present_and_set_off(divs):
    t = text(divs("A18687"))
    assert t.count(GAP) > 100
    assert not re.search(r"\w" + GAP + "|" + GAP + r"\w", t)
    assert GAP + " " + GAP not in t
    custom = text(divs("A18687", gap_marker="[?]"))
    assert "[?]" in custom and GAP not in custom


def test_drama_speakers_and_stage_on_own_lines(divs):
    t = text(divs("A53060"))
    assert "\nEnter the Lord Fatherly, and the Lord Singularity his Son.\n" in t
    assert "\nLord Fatherly.\nSon, you must leave that to fortune.\n" in t


def test_standard_ebooks_spine_order_and_skipped_matter(divs):
    nn = [x.title for x in divs("SE-charles-dickens_nicholas-nickleby")]
    assert nn[:4] == ["Preface to the First Edition", "Preface to the First Cheap Edition", "I", "II"]
    assert nn.index("X") == nn.index("IX") + 1  # spine order, not file-name order (chapter-10 < chapter-2)
    emma = text(divs("SE-jane-austen_emma"))
    assert "This ebook was produced for" not in emma and "hours of hard work by volunteers" not in emma
    pepys = divs("SE-samuel-pepys_the-diary")
    assert pepys[0].title.startswith("January 1659")  # foreword and introduction (1890s editors) skipped
    pt = text(pepys)
    assert "nearly seventy years" not in pt and "We here take leave of a writer" not in pt
    assert "our waterman, White, who told us" in pt  # <a epub:type="noteref">183</a> removed
    assert "Byron was a rapid as well as a voluminous writer" not in text(divs("SE-lord-byron_don-juan"))


def test_standard_ebooks_verse_line_by_line(divs):
    t = text(divs("SE-lord-byron_don-juan"))
    assert "I want a hero: an uncommon want,\nWhen every year and month sends forth a new one,\n" in t


def test_nltk_front_matter_skipped_one_division_per_act(divs):
    d = divs("NLTK-shakespeare-r_and_j")
    assert [x.title for x in d] == ["ACT I", "ACT II", "ACT III", "ACT IV", "ACT V"]
    assert d[0].text.startswith("The Tragedy of Romeo and Juliet\n\nDramatis Personae\n\nESCALUS, prince of Verona.")
    assert "XML Styling" not in text(d) and "freely copied" not in text(d)


# --- synthetic inputs ----------------------------------------------------------------------------------
TEI = ('<TEI xmlns="http://www.tei-c.org/ns/1.0"><teiHeader><fileDesc><title>HEADER</title></fileDesc></teiHeader>'
       '<text><body><div type="chapter"><head>Of y<hi rend="sup">e</hi> thynges</head>'
       '<p>y<hi rend="sup">t</hi> co<g ref="char:cmbAbbrStroke">\u0304</g>maundement and tho<g ref="char:'
       'cmbAbbrStroke">\u0304</g> all ꝑsones<g ref="char:punc">▪</g> <note place="margin">MARGIN</note>ende. '
       'A<gap reason="illegible" extent="1 letter"><desc>〈◊〉</desc></gap><gap reason="foreign"><desc>〈 x 〉'
       '</desc></gap>B <choice><abbr>g<hi rend="sup">o</hi></abbr><expan>ergo</expan></choice> notw<hi rend="sup">t'
       '</hi>ſtanding quibuſ<expan>\n <am><g ref="char:abque"/></am>\n <ex>que</ex>\n</expan> <ref>[1]</ref>'
       'par<g ref="char:EOLhyphen"/>\n<pb n="2"/>\n<lb/>te<gap unit="graphic"/><figure><figDesc>FIG</figDesc></figure>'
       '</p><sp><speaker>Tom.</speaker><p>Hello</p><stage>Exit.</stage></sp>'
       '<lg><l>one</l><l>two<lb/>three</l></lg></div></body></text></TEI>')


def _record(tmp_path, content: bytes | str, fmt: str = "tcp-tei", name: str = "x.xml", **extra) -> tuple:
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    rec = {"id": "T1", "format": fmt, "files": [{"path": f"raw/{name}", "sha256": "0" * 64, **extra}]}
    return rec, {f"raw/{name}": p}


def test_tei_transcription_rules(tmp_path):
    (d,) = extract(*_record(tmp_path, TEI))
    assert d.title == "Of the thynges"
    assert d.text == ("Of the thynges\n\nthat commaundement and thon all persones ende. A " + GAP +
                      " B ergo notwithstanding quibusque parte\n\nTom.\nHello\nExit.\n\none\ntwo\nthree")


def test_plain_text_encodings_and_form_feeds(tmp_path):
    d = extract(*_record(tmp_path, b"\xef\xbb\xbfFirst  line   \r\nnext\x0cSecond", fmt="text", name="a.txt"))
    assert [(x.title, x.text) for x in d] == [("", "First line\nnext"), ("", "Second")]
    (d,) = extract(*_record(tmp_path, "caf\u00e9 \u2018x\u2019".encode("cp1252"), fmt="text", name="b.txt"))
    assert d.text == "caf\u00e9 \u2018x\u2019"


@pytest.mark.parametrize("content, fmt, why", [
    ('<TEI xmlns="http://www.tei-c.org/ns/1.0"><text><body><p>open</body></TEI>', "tcp-tei", "malformed XML"),
    (bytes(range(256)) * 8, "tcp-tei", "binary"),
    (b"\x00\x01PK\x03\x04" * 50, "text", "binary"),
    (b"", "eltec-tei", "empty"),
    (b"  \n", "text", "empty"),
    ('<TEI xmlns="http://www.tei-c.org/ns/1.0"><teiHeader/></TEI>', "tcp-tei", "no TEI <text>"),
    ('<TEI xmlns="http://www.tei-c.org/ns/1.0"><text><body><div><note>n</note></div></body></text></TEI>',
     "tcp-tei", "no text"),
    ("<package/>", "standardebooks-xhtml", "no <spine> items"),
])
def test_bad_inputs_raise_source_error(tmp_path, content, fmt, why):
    rec, files = _record(tmp_path, content, fmt=fmt, name="bad.opf" if fmt.startswith("standard") else "bad.x")
    with pytest.raises(SourceError) as e:
        extract(rec, files)
    assert e.value.kind == "extract" and e.value.source_id == "T1"
    assert e.value.file == rec["files"][0]["path"] and why in e.value.message


def test_unknown_format_missing_file_and_missing_zip_member(tmp_path, records, mirror):
    rec, files = _record(tmp_path, "x", fmt="pdf")
    with pytest.raises(SourceError) as e:
        extract(rec, files)
    assert e.value.kind == "format" and e.value.file == "raw/x.xml" and "pdf" in e.value.message
    rec, _ = _record(tmp_path, TEI)
    with pytest.raises(SourceError, match="not given") as e:
        extract(rec, {})
    assert e.value.kind == "extract" and e.value.file == "raw/x.xml"
    nl = json.loads(json.dumps(records["NLTK-shakespeare-hamlet"]))
    nl["files"][0]["member"] = "shakespeare/lear.xml"
    path = nl["files"][0]["path"]
    with pytest.raises(SourceError, match="lear.xml") as e:
        extract(nl, {path: mirror / path})
    assert e.value.kind == "extract" and e.value.file == path


def test_config_is_validated():
    with pytest.raises(ValueError, match="gap_marker"):
        ExtractConfig(gap_marker="[gap]")
    with pytest.raises(ValueError, match="keep_long_s"):
        ExtractConfig(keep_long_s="yes")


@pytest.mark.slow
def test_whole_mirror_extracts(records, mirror):
    t0, size = time.perf_counter(), 0
    for sid, rec in records.items():
        d = extract(rec, {f["path"]: mirror / f["path"] for f in rec["files"]})
        assert d and all(x.text for x in d), sid
        size += sum(f.get("member_bytes", f["bytes"]) for f in rec["files"])
    elapsed = time.perf_counter() - t0
    print(f"\nwhole mirror: {len(records)} records, {size / 1e6:.1f} MB in {elapsed:.1f} s "
          f"= {size / 1e6 / elapsed:.1f} MB/s")
