"""Cleaning and quality rules on known inputs."""
from training.clean import CleanConfig, clean_text, count_words, rejection_reason

ENGLISH = ("Here begynneth a lytell treatyse called the gouernall of helthe with the medecyne of the stomacke, "
           "and it is to be knowen that whan a man hath eaten he shall not slepe anone, for that is not good "
           "for his body nor for his stomacke, but he shall walke a lytell and then rest him. ") * 2
LATIN = ("In principio erat verbum et verbum erat apud Deum et Deus erat verbum. Hoc erat in principio apud "
         "Deum. Omnia per ipsum facta sunt et sine ipso factum est nihil quod factum est. In ipso vita erat et "
         "vita erat lux hominum, et lux in tenebris lucet et tenebrae eam non comprehenderunt. ") * 2


def test_clean_text_repairs_and_normalises():
    assert clean_text("caf\u00c3\u00a9") == "caf\u00e9"  # UTF-8 read as Latin-1 (mojibake)
    assert clean_text("e\u0301") == "\u00e9"  # NFC
    assert clean_text("  a \t b\u00a0c  \r\n\r\n\r\n\nd  ") == "a b c\n\nd"
    assert clean_text("\ufb05ay") == "stay"  # ligature ſt split by ftfy, long s mapped after it
    assert clean_text("\u017fo", keep_long_s=True) == "\u017fo"
    assert clean_text("\u2019tis") == "'tis"  # curly apostrophe unified with the straight one
    assert clean_text("a\u00adb\u200bc") == "abc"  # soft hyphen and zero-width space


def test_count_words():
    assert count_words("'Tis one o'clock in 1666 \u3008\u2026\u3009 year, quoth he.") == 7


def test_rejection_reasons():
    assert rejection_reason(ENGLISH) is None
    assert rejection_reason(LATIN) == "latin"
    assert rejection_reason(ENGLISH + LATIN) is None  # a Latin quotation inside English prose stays
    assert rejection_reason("A shorte tale of the towne.") == "too_short"
    gappy = " ".join(f"word{i % 7} \u3008\u2026\u3009" for i in range(60)).replace("0", "a")
    assert rejection_reason("the and of " + ENGLISH[:200] + gappy) == "illegible"
    table = "the sum " + " ".join(f"{i}.{i * 7} 1{i}/{i} --" for i in range(200)) + " " + ENGLISH[:300]
    assert rejection_reason(table) == "garbage"
    assert rejection_reason(ENGLISH, CleanConfig(min_words=10_000)) == "too_short"
