"""Division merging into documents (the split is tested in tests/test_splits.py)."""
from dataclasses import dataclass

from training.documents import DocumentConfig, make_documents

REC = {"id": "T1", "title": "A Booke", "author": "Anon", "year": 1623, "decade": 1620, "place": "London",
       "london": True, "source": "EEBO-TCP", "license": "CC0-1.0", "attribution": "none", "format": "tcp-tei"}


@dataclass
class Div:
    title: str
    text: str


def words(n, w="word"):
    return " ".join([w] * n)


def test_short_text_is_one_document_with_metadata():
    docs = make_documents(REC, [Div("I", words(100)), Div("II", words(50))])
    assert len(docs) == 1
    d = docs[0]
    assert d["id"] == "T1#0000" and d["text"] == words(100) + "\n\n" + words(50)
    assert (d["year"], d["decade"], d["license"], d["source_id"], d["place"]) == (1623, 1620, "CC0-1.0", "T1", "London")


def test_long_text_is_cut_at_divisions():
    cfg = DocumentConfig(max_doc_words=1000, min_division_words=300)
    divs = [Div("Title", words(20)), Div("Ch 1", words(600)), Div("Ch 2", words(700)), Div("Ch 3", words(2500)),
            Div("End", words(10))]
    docs = make_documents(REC, divs, cfg)
    titles = [d["division"] for d in docs]
    # the 20-word title page merges into chapter 1; chapter 3 is cut at paragraphs (here: one long
    # paragraph stays whole, since it is never split inside); the tail joins the last division
    assert titles[:2] == ["Title", "Ch 2"]
    assert docs[0]["text"].startswith(words(20) + "\n\n") and len(docs[0]["text"].split()) == 620
    assert docs[-1]["text"].endswith(words(10))
    assert [d["id"] for d in docs] == [f"T1#{i:04d}" for i in range(len(docs))]
    para = "\n\n".join([words(100)] * 25)
    parts = make_documents(REC, [Div("Big", para), Div("Other", words(400))], cfg)
    assert [p["division"] for p in parts[:3]] == ["Big (part 1)", "Big (part 2)", "Big (part 3)"]
    assert all(len(p["text"].split()) <= 1000 for p in parts)
    assert sum(len(p["text"].split()) for p in parts) == 2900
