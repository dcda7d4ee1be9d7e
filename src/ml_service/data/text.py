"""Multilingual text cleaning, tokenising and TF-IDF for user and item text features (spec §6.2, D9)."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

# Vocabulary cap per matrix: keeps 200k-user tenants fast and small; the most frequent terms are kept.
MAX_FEATURES = 20_000
# A term must occur in this many texts to become a feature: a term of a single text links it to nothing,
# and on large tenants such hapaxes (names, typos) would be most of the vocabulary. Small corpora keep all.
MIN_DF = 2
MIN_DF_FROM_TEXTS = 20

_URL = re.compile(r"http\S*\s?")
# An e-mail is a whole whitespace-separated token with an `@` that has a character on each side (the reference's
# `\S+@\S+\s?`). Matching only from a token's start gives exactly the reference's matches (its leftmost match
# always starts there) in linear time; the unanchored pattern retried every position of a long token (quadratic).
_EMAIL = re.compile(r"(?<!\S)\S+@\S+\s?")
# After NFKD, accents of Latin and Greek letters are separate combining marks right after the base letter:
# dropping them (é -> e, ά -> α) keeps words readable and matches accent-less spellings. Marks of every other
# script (Cyrillic й, kana dakuten, Devanagari virama, Thai vowels, Hangul jamo) are recomposed by NFC instead.
_LATIN_GREEK_ACCENTS = re.compile(r"(?<=[A-Za-z\u0370-\u03FF\u1F00-\u1FFF])[\u0300-\u036F]+")
# Scripts written without spaces between words: their runs are tokenised into character bigrams.
_UNSPACED_RANGES = (
    "\u0E00-\u0E7F"  # Thai
    "\u0E80-\u0EFF"  # Lao
    "\u1000-\u109F"  # Myanmar
    "\u1780-\u17FF"  # Khmer
    "\u3040-\u309F"  # Hiragana
    "\u30A0-\u30FF"  # Katakana (with the prolonged sound mark)
    "\u31F0-\u31FF"  # Katakana phonetic extensions
    "\u3400-\u4DBF"  # CJK extension A
    "\u4E00-\u9FFF"  # CJK unified ideographs
    "\uF900-\uFAFF"  # CJK compatibility ideographs
    "\U00020000-\U0003134F"  # CJK extensions B-G
)
_HAN = re.compile(r"[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\U00020000-\U0003134F]")


@functools.cache
def _mark_class() -> str:
    """A regex character-class body of every Unicode combining mark (categories Mn, Mc, Me)."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    marks = _mark_class()
    # Python's \w excludes combining marks, yet Devanagari, Thai or Arabic words need theirs: keep them too.
    not_letter = re.compile(f"[^\\w\\s{marks}]|[\\d_]")
    unspaced = re.compile(f"[{_UNSPACED_RANGES}]")
    runs = re.compile(f"[{_UNSPACED_RANGES}{marks}]+|[^{_UNSPACED_RANGES}]+")
    cluster = re.compile(f".[{marks}]*", re.DOTALL)
    return not_letter, unspaced, runs, cluster


def clean_text(text: str) -> str:
    """Reference cleaning with every script kept (D9): URLs, e-mails, punctuation, digits out; casefolded.

    Punctuation becomes a space rather than vanishing, so French `l'apprentissage` gives `apprentissage`.
    """
    not_letter = _patterns()[0]
    text = _EMAIL.sub(" ", _URL.sub(" ", text))
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = unicodedata.normalize("NFC", _LATIN_GREEK_ACCENTS.sub("", text))
    return " ".join(not_letter.sub(" ", text).casefold().split())


def _words(cleaned: str) -> list[str]:
    """Tokens of a cleaned text: words of 2+ characters, and character bigrams of unspaced-script runs."""
    _, unspaced, runs, cluster = _patterns()
    if not unspaced.search(cleaned):
        return [w for w in cleaned.split() if len(w) >= 2]
    tokens: list[str] = []
    for word in cleaned.split():
        if not unspaced.search(word):
            if len(word) >= 2:
                tokens.append(word)
            continue
        for run in runs.findall(word):
            if not unspaced.match(run):
                if len(run) >= 2:
                    tokens.append(run)
                continue
            chars = cluster.findall(run)  # a base character with its marks (Thai vowels) stays whole
            if len(chars) == 1:
                if _HAN.match(run):  # one Han character is a word; a lone kana or Thai letter is not
                    tokens.append(run)
            else:
                tokens.extend(a + b for a, b in zip(chars, chars[1:]))
    return tokens


@functools.cache
def stop_words() -> frozenset[str]:
    """Union of every language of the `stop-words` package, cleaned like the texts they are matched against.

    Multi-word entries (Vietnamese `a ha`) are skipped: their parts alone are often real words.
    """
    from stop_words import AVAILABLE_LANGUAGES, get_stop_words

    words: set[str] = set()
    for language in AVAILABLE_LANGUAGES:
        for entry in get_stop_words(language):
            if len(entry.split()) != 1:
                continue
            cleaned = clean_text(entry)
            words.update(cleaned.split())
            words.update(_words(cleaned))
    words.discard("")
    return frozenset(words)


def tokenize(text: str) -> list[str]:
    """The TF-IDF terms of one raw text: cleaned, tokenised (bigrams for CJK/Thai), stop words removed."""
    stop = stop_words()
    return [t for t in _words(clean_text(text)) if t not in stop]


def tfidf_matrix(texts: Sequence[str]) -> tuple[sp.csr_matrix, list[str]]:
    """(len(texts), n_terms) float32 TF-IDF (smooth idf, L2 rows) and its terms; no usable term -> no column."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    n_texts = len(texts)
    empty = (sp.csr_matrix((n_texts, 0), dtype=np.float32), [])
    non_empty = sum(1 for t in texts if t and not t.isspace())
    if non_empty == 0:
        return empty
    vectorizer = TfidfVectorizer(
        analyzer=tokenize,
        min_df=MIN_DF if non_empty >= MIN_DF_FROM_TEXTS else 1,
        max_features=MAX_FEATURES,
        dtype=np.float32,
        smooth_idf=True,
        norm="l2",
    )
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # sklearn's "empty vocabulary" / "no terms remain": every word was a stop word or noise
        return empty
    return sp.csr_matrix(matrix, dtype=np.float32), [str(t) for t in vectorizer.get_feature_names_out()]
