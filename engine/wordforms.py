"""Word forms: the one place that says how a listed lexicon form may be written. Owns inflection (plural,
possessive, verb endings), compounds written solid, early-modern spelling variants, and the inverse rule
(`base_forms`) the lexicon's lookup uses. The lexicon (engine/lexicon.py), the anachronism detector
(evals/anachronism_forms.py), the time lock (engine/timelock.py) and the challenge-set maker
(evals/challenge/make_dev.py) all take their forms from here, so the lock bans every form the detector
can flag (tests/test_wordforms.py checks it entry by entry).

Forms here are lexicon-normalised (engine.lexicon.normalize: lower case, one space between words, "'" for
every apostrophe). Derived forms of a listed form, in the order `surfaces` returns them:
  * endings of the last word: plural -s/-es/-ies and possessive 's/s'/es', each kept only where `base_forms`
    maps it back to the form (so lookup, detector and lock agree); for single words, when verbs: -ed/-ing
    (-d/-ing after e, -ied after consonant + y), -eth and -'d, the early-modern third person and past;
  * a two-word form written solid ("lightning rod" -> "lightningrod");
  * early-modern spellings of a single word of >= 5 letters, as printers before ~1700 set them: u/v by
    position (initial v, medial u: "vmbrella", "reuolver"), j -> i ("iournal"), final -y -> -ie ("lorrie"),
    -ic -> -ick ("galvanick"), and a final e after a consonant ("telegraphe"), with plural/possessive.
    A derived form must not reach an older word. Measured on the raw mirror (crude tag-stripped text, word ->
    first year), derived single words attested > 5 years before their entry, 2,804 entries: endings 12 of
    6,236 (periwigs 1659 < periwig 1675), verb forms 18 of 8,050 (shamed 1509 < sham 1677), solid compounds
    4 of 7,276 (coop < "co op"), spellings 2 of 4,483 (aduert, whiste). With 4-letter words the spellings
    reached 12 (shame, flame from sham, flam; coue from cove; duds from dvds): hence >= 5 letters. The
    detector drops every derived word the dated corpus has before its entry's year; the lock keeps banning
    it (stricter is safe for the lock; those words are rare).
"""
from __future__ import annotations

import re

_ES_AFTER = ("s", "x", "z", "ch", "sh", "o")  # English plural -es follows sibilants and some -o nouns
_VOWELS = "aeiou"
# Final consonants after which printers added an e (telegraphe, cigare, balloone); not after s/x/z (reads as
# a plural), y/w or a vowel, c (-ic takes -ick instead) or a doubled consonant (-ll, -tt).
_FINAL_E_AFTER = set("bdfghklmnprt")


def base_forms(normalized: str) -> list[str]:
    """Candidate dictionary forms of a normalised word or phrase, most specific first.

    Only the last word is inflected ("steam engines" -> "steam engine"). Rule: possessive 's / s', then
    plural -ies -> -y (after a consonant), -es after s/x/z/ch/sh/o, and -s (not after s: "glass" is no
    plural). A stem must keep 3 letters: the corpus mirror has split-word fragments such as "b oks" (1774)
    that would otherwise become "ok". Verb endings (-ed, -ing) are not stripped: "married" must not find
    "marry", and forms such as "vaccinated" are listed explicitly instead.
    """
    out = [normalized]
    head, _, last = normalized.rpartition(" ")
    prefix = head + " " if head else ""
    stems = []
    if last.endswith("'s") and len(last) > 2:
        stems.append(last[:-2])
    elif last.endswith("s'") and len(last) > 2:
        stems.append(last[:-1])
    for word in stems + [last]:
        if word.endswith("ies") and len(word) >= 5 and word[-4] not in _VOWELS:
            stems.append(word[:-3] + "y")
        if word.endswith("es") and word[:-2].endswith(_ES_AFTER) and len(word) >= 5:
            stems.append(word[:-2])
        if word.endswith("s") and not word.endswith("ss") and len(word) >= 4:
            stems.append(word[:-1])
    for stem in stems:
        cand = prefix + stem
        if cand not in out:
            out.append(cand)
    return out


def plural(form: str) -> str | None:
    """The regular plural of a form's last word, or None when there is none that `base_forms` maps back
    (already plural, a mass noun ending in s, punctuation)."""
    last = form.rsplit(" ", 1)[-1]
    if not last.isalpha() or last.endswith("s"):
        return None
    if last.endswith("y") and len(last) > 1 and last[-2] not in _VOWELS:
        cand = form[:-1] + "ies"
    elif last.endswith(_ES_AFTER):
        cand = form + "es"
    else:
        cand = form + "s"
    return cand if form in base_forms(cand)[1:] else None


def verb_forms(word: str) -> list[str]:
    """-ed/-ing past and participle, -eth third person, -'d past of one word of >= 4 letters (else [])."""
    if not (word.isalpha() and len(word) >= 4):
        return []
    if word.endswith("e"):
        return [word + "d", word[:-1] + "ing", word + "th", word[:-1] + "'d"]
    if word.endswith("y") and word[-2] not in _VOWELS:
        return [word[:-1] + "ied", word + "ing", word[:-1] + "ieth", word[:-1] + "i'd"]
    return [word + "ed", word + "ing", word + "eth", word + "'d"]


def inflections(form: str, verbs: bool = True) -> list[str]:
    """Endings a written form may carry: plural and possessive on its last word where `base_forms` maps
    them back to form, and (single words, when verbs) `verb_forms`."""
    out = []
    stem_y = form[:-1] + "ies" if form.endswith("y") else None
    for cand in (form + "s", form + "es", stem_y, form + "'s", form + "s'", form + "es'", stem_y and stem_y + "'"):
        if cand and cand not in out and form in base_forms(cand)[1:]:
            out.append(cand)
    if verbs and " " not in form:
        out += [v for v in verb_forms(form) if v not in out]
    return out


def solid(form: str) -> str | None:
    """A two-word form of letters written as one word ("lightning rod" -> "lightningrod"), else None."""
    if form.count(" ") == 1 and form.replace(" ", "").isalpha():
        return form.replace(" ", "")
    return None


def _uv(word: str) -> str:
    """Printers' u/v by position: v at the start of a word, u inside it (vpon, haue, reuolver)."""
    head, rest = word[0], word[1:]
    if head == "u":
        head = "v"
    return head + rest.replace("v", "u")


def spelling_variants(word: str) -> list[str]:
    """Early-modern spellings of one word of >= 5 letters (see the module docstring), without the word."""
    if not (word.isalpha() and len(word) >= 5):
        return []
    out = []
    for cand in (_uv(word), word.replace("j", "i"),
                 word[:-1] + "ie" if word.endswith("y") and word[-2] not in _VOWELS else None,
                 word + "k" if word.endswith("ic") else None,
                 word + "e" if word[-1] in _FINAL_E_AFTER and word[-2] != word[-1] else None):
        if cand and cand != word and cand not in out:
            out.append(cand)
    return out


_WORDS = re.compile(r"[^\W\d_]+")


def words(form: str) -> tuple[str, ...]:
    """The letter runs of a form, as the time lock reads text ("st. paul's" -> ("st", "paul", "s"))."""
    return tuple(_WORDS.findall(form))


def surfaces(form: str, polysemous: bool = False, cued: bool = False) -> list[str]:
    """Every derived written form of a listed form, without the form itself, in a stable order: endings,
    the solid compound, early-modern spellings of a single word and their endings.

    polysemous (an older generic sense exists): plural/possessive endings only - the form is matched to keep
    shorter terms from firing inside it, never flagged. cued (the later sense needs a context word nearby,
    "train" near "railway"): endings without verb forms ("trained" is not the railway train) and the solid
    compound, no old spellings (an old spelling is the old sense: "traine")."""
    out = inflections(form, verbs=not (polysemous or cued))
    if polysemous:
        return out
    joined = solid(form)
    if joined:
        out += [joined, *inflections(joined, verbs=False)]
    if " " not in form and not cued:
        for var in spelling_variants(form):
            out += [var, *inflections(var, verbs=False)]
    return [f for f in dict.fromkeys(out) if f != form]
