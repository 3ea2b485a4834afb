"""Dated lexicon: the shipped TSV loads and holds checked dates; lookup is whole-form with plural/possessive
and hyphen/space variants only; malformed TSVs fail with the line named."""
import pytest

from engine.lexicon import BASES, YEAR_RANGE, Entry, base_forms, load_lexicon, normalize

HEADER = "term\tvariants\tearliest_year\tbasis\tcategory\tnote\n"


@pytest.fixture(scope="module")
def lex():
    return load_lexicon()


def test_shipped_file_loads_with_enough_entries(lex):
    assert len(lex) >= 300
    assert all(isinstance(e, Entry) for e in lex.entries)
    assert all(YEAR_RANGE[0] <= e.year <= YEAR_RANGE[1] for e in lex.entries)
    assert {e.basis for e in lex.entries} == BASES  # every basis is used at least once


@pytest.mark.parametrize("word,year,basis", [
    ("telegraph", 1794, "first_use"),     # OED1: 1794 for Chappe's semaphore, not the 1830s electric one
    ("Great Fire", 1666, "event"),
    ("Great Fire of London", 1666, "event"),
    ("railway", 1681, "first_use"),       # OED3 colliery wagonway, not 1825
    ("potatoes", 1565, "first_use"),      # Hawkins, of the sweet potato
    ("chocolate", 1604, "first_use"),
    ("newspaper", 1667, "first_use"),
    ("penny post", 1680, "founding"),     # Dockwra, not Rowland Hill's 1840
    ("scientist", 1833, "coinage"),
    ("dinosaur", 1841, "coinage"),
    ("British Museum", 1753, "founding"),
    ("Bank of England", 1694, "founding"),
    ("Royal Society", 1660, "founding"),
    ("Battle of Waterloo", 1815, "event"),
    ("computer", 1613, "first_use"),      # a person who computes: the older sense sets the year
])
def test_known_answers(lex, word, year, basis):
    e = lex.lookup(word)
    assert e is not None, word
    assert (e.year, e.basis) == (year, basis)


@pytest.mark.parametrize("word", ["smartphone", "internet", "television", "email", "website", "selfie"])
def test_modern_words_are_after_1900(lex, word):
    assert lex.lookup(word).year > 1900


@pytest.mark.parametrize("query", ["Steam-Engines", "steam engine", "STEAM\u2010ENGINE", "steamengine",
                                   "Steam-Engine's", "steam   engines'", " steam-engines, "])
def test_steam_engine_variants(lex, query):
    assert lex.lookup(query).term == "steam engine"


@pytest.mark.parametrize("word", [
    "year", "heart", "there", "married", "canon",           # the seed checker's substring false flags
    "art", "ye", "engine", "train", "car", "battery", "balloon", "cab",  # old words or older senses
    "sandwich", "omnibus", "guinea", "Waterloo", "on line", "on-line", "b oks", "teapot", "",
])
def test_ordinary_and_older_words_are_not_found(lex, word):
    hit = lex.lookup(word)
    assert hit is None or hit.cues, hit  # an old word is at most a cued entry: dated only with its cue nearby


def test_unambiguous_plurals_stand_for_clashing_singulars(lex):
    # 'Sandwich' the port and Latin 'omnibus' are old; their plurals can only be the later things
    assert lex.lookup("sandwiches").year == 1762
    assert lex.lookup("Omnibuses").year == 1829
    assert lex.lookup("guineas").year == 1663


def test_inflection_rule():
    assert base_forms("potatoes")[:2] == ["potatoes", "potato"]
    assert "navvy" in base_forms("navvies")
    assert base_forms("glass") == ["glass"]            # -ss is not a plural
    assert base_forms("oks") == ["oks"]                # a stem keeps 3 letters
    assert base_forms("married") == ["married"]        # no verb stripping
    assert base_forms("bow street runner's")[1] == "bow street runner"


def test_normalize():
    assert normalize("  Nelson\u2019s \t Column ") == "nelson's column"
    assert normalize("Steam-Engine") == normalize("steam \u2014 engine") == "steam engine"
    assert normalize("\u017fteam") == "steam"                  # long s
    assert normalize("steam\u00adengine") == "steamengine"     # soft hyphen joins


def test_forms_are_normalised_and_shared_by_variants(lex):
    forms = lex.forms()
    assert all(normalize(f) == f for f in forms)
    assert forms["steam engine"] is forms["steamengine"] is lex.lookup("steam engine")
    assert lex.max_words >= 4 and len(forms) > len(lex)


def test_polysemous_entries_explain_the_older_sense(lex):
    poly = [e for e in lex.entries if e.category == "polysemous"]
    assert {"great fire", "radio", "video", "Crystal Palace"} <= {e.term for e in poly}
    assert all(e.note for e in poly)


def _write(tmp_path, rows):
    p = tmp_path / "lex.tsv"
    p.write_text("# comment\n" + HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return p


GOOD = "telegraph\ttelegraphic\t1794\tfirst_use\ttechnology\tok"


@pytest.mark.parametrize("bad,needle", [
    ("telescope\t\t3000\tfirst_use\tinstrument\t", "earliest_year 3000 out of range 1000..2100"),
    ("telescope\t\tc.1619\tfirst_use\tinstrument\t", "not an integer"),
    ("telescope\t\t1619\thearsay\tinstrument\t", "basis 'hearsay'"),
    ("telescope\t\t1619\tfirst_use\tgadget\t", "category 'gadget'"),
    ("telescope\t\t1619\tfirst_use", "expected 6"),
    ("telescope\ta||b\t1619\tfirst_use\tinstrument\t", "empty variant"),
    ("semaphore\tTelegraphic\t1816\tfirst_use\ttechnology\t", "duplicates line 3"),
    ("telegraph-\t\t1816\tfirst_use\ttechnology\t", "duplicates line 3"),   # same form after normalize
])
def test_malformed_rows_name_the_line(tmp_path, bad, needle):
    path = _write(tmp_path, [GOOD, bad])
    with pytest.raises(ValueError) as err:
        load_lexicon(path)
    assert "line 4" in str(err.value) and needle in str(err.value)


def test_bad_header_and_variants_collapsing_within_an_entry(tmp_path):
    p = tmp_path / "h.tsv"
    p.write_text("term\tvariants\tyear\tbasis\tcategory\tnote\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: header"):
        load_lexicon(p)
    ok = load_lexicon(_write(tmp_path, ["steam engine\tsteam-engine|steam  engine\t1751\tfirst_use\ttechnology\t"]))
    assert len(ok) == 1 and list(ok.forms()) == ["steam engine"]


# --- coverage and the sense-cue column -------------------------------------------------------------------

def test_lexicon_covers_the_period(lex):
    from collections import Counter

    assert len(lex) >= 2500
    per_cat = Counter(e.category for e in lex.entries)
    for cat in ("food", "drink", "transport", "clothing", "slang", "sport", "finance", "trade", "science",
                "medicine", "politics", "institution", "building", "street", "technology"):
        assert per_cat[cat] >= 40, (cat, per_cat[cat])
    slang_1600_1850 = [e for e in lex.entries if e.category == "slang" and 1600 <= e.year <= 1850]
    assert len(slang_1600_1850) >= 100
    assert all(e.note for e in lex.entries)  # every date states its basis
    assert all("approximate" in e.note.lower() for e in lex.entries if e.basis == "approximate")


def test_shipped_file_is_sorted_by_category_then_term():
    from engine.lexicon import DEFAULT_PATH

    rows = [line.split("\t") for line in DEFAULT_PATH.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")][1:]
    keys = [(r[4], r[0].lower()) for r in rows]
    assert keys == sorted(keys)


def test_cued_entries_carry_normalised_cues(lex):
    engine = lex.lookup("engines")
    assert engine.term == "engine" and engine.year == 1815 and "railway" in engine.cues
    assert lex.lookup("steam engine").cues == ()  # the compound needs no cue
    cued = [e for e in lex.entries if e.cues]
    assert len(cued) >= 50 and all(e.category != "polysemous" and e.note for e in cued)
    assert all(c == normalize(c) for e in cued for c in e.cues)


HEADER7 = "term\tvariants\tearliest_year\tbasis\tcategory\tnote\tcues\n"


@pytest.mark.parametrize("row,needle", [
    ("train\t\t1825\tevent\ttransport\tretinue is old\trailway||station", "empty cue"),
    ("train\t\t1825\tevent\tpolysemous\tretinue is old\trailway", "not 'polysemous'"),
    ("train\t\t1825\tevent\ttransport\t\trailway", "a note"),
    ("train\t\t1825\tevent\ttransport\tretinue is old", "expected 7"),
])
def test_bad_cue_rows_name_the_line(tmp_path, row, needle):
    p = tmp_path / "c.tsv"
    p.write_text(HEADER7 + row + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2") as err:
        load_lexicon(p)
    assert needle in str(err.value)


def test_cue_column_parses_and_legacy_files_still_load(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text(HEADER7 + "train\t\t1825\tevent\ttransport\tretinue is old\tRailway|Steam-Engine\n", encoding="utf-8")
    assert load_lexicon(p).lookup("trains").cues == ("railway", "steam engine")
    legacy = tmp_path / "l.tsv"
    legacy.write_text(HEADER + "telegraph\t\t1794\tfirst_use\ttechnology\tok\n", encoding="utf-8")
    assert load_lexicon(legacy).lookup("telegraph").cues == ()
