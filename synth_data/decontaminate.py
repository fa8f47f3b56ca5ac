"""Word n-gram decontamination against the evaluation suites.

Texts are normalised to lowercase word tokens (``\\w+``: punctuation and whitespace dropped). Every eval item's
user-message text and its reference ``answer`` (when it has one) are indexed as word n-grams in an inverted index
n-gram -> eval item ids. The overlap of a text is the largest share, over eval items, of the text's distinct n-grams
that occur in that one eval item; a text is contaminated when that share reaches the threshold.

A text shorter than ``ngram`` words has no n-gram and is compared whole: its full token tuple against every eval
item's contiguous windows of the same length (share 1.0 when it occurs as a contiguous run in an eval item, else 0.0).
With the default ``min_words=1`` that includes one-word texts: a bare number that appears in any eval prompt or answer
is flagged; pass ``min_words`` to leave texts that short alone.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

WORD_RE = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    """Lowercase word tokens of ``text`` (punctuation and whitespace dropped)."""
    return WORD_RE.findall(text.lower())


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    """Contiguous word n-grams of ``words`` (empty when there are fewer than ``n`` words)."""
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def item_texts(item: Mapping) -> list[str]:
    """The texts of an eval item that are indexed: its user turns (joined) and its reference answer, if any."""
    texts = ["\n".join(m["content"] for m in item["messages"] if m["role"] == "user")]
    answer = item.get("answer")
    if answer is not None and str(answer).strip():
        texts.append(str(answer))
    return texts


class Decontaminator:
    """Inverted word n-gram index over eval items; says which eval item a text overlaps most, and by how much."""

    def __init__(self, items: Iterable[Mapping], ngram: int, threshold: float, *, min_words: int = 1) -> None:
        """``min_words``: texts with fewer words are never flagged (1: every non-empty text is checked). A one- or
        two-word text such as a bare number occurs in some eval item by chance, so a caller checking short
        responses may want a few words here."""
        if ngram < 1:
            raise ValueError(f"decontamination.ngram must be at least 1, got {ngram}")
        if not 0.0 < threshold <= 1.0:
            # Above 1 nothing would be flagged, not even a verbatim copy of an eval item (overlap 1.0).
            raise ValueError(f"decontamination.threshold must be in (0, 1], got {threshold}")
        self.ngram = ngram
        self.threshold = threshold
        self.min_words = min_words
        self._item_tokens: dict[str, list[list[str]]] = {}
        for item in items:
            self._item_tokens.setdefault(str(item["id"]), []).extend(tokens(t) for t in item_texts(item))
        self._index = self._build_index(ngram)
        self._short_index: dict[int, dict[tuple[str, ...], set[str]]] = {}

    def _build_index(self, n: int) -> dict[tuple[str, ...], set[str]]:
        index: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for item_id, token_lists in self._item_tokens.items():
            for words in token_lists:
                for gram in ngrams(words, n):
                    index[gram].add(item_id)
        return dict(index)

    def __len__(self) -> int:
        """Number of eval items indexed."""
        return len(self._item_tokens)

    def overlap(self, text: str) -> tuple[float, str | None]:
        """(largest share of the text's distinct n-grams found in one eval item, that item's id or None).

        Ties between eval items go to the smallest id, so the answer does not depend on the order of the items.
        """
        words = tokens(text)
        if not words or len(words) < self.min_words:
            return 0.0, None
        if len(words) < self.ngram:
            index = self._short_index.get(len(words))
            if index is None:
                index = self._short_index[len(words)] = self._build_index(len(words))
            matches = index.get(tuple(words))
            return (1.0, min(matches)) if matches else (0.0, None)
        grams = set(ngrams(words, self.ngram))
        hits: Counter[str] = Counter()
        for gram in grams:
            hits.update(self._index.get(gram, ()))
        if not hits:
            return 0.0, None
        item_id, count = min(hits.items(), key=lambda kv: (-kv[1], kv[0]))
        return count / len(grams), item_id

    def is_contaminated(self, text: str) -> str | None:
        """A reason such as ``"eval overlap 0.62 with math-eval-0012"`` when the overlap reaches the threshold."""
        share, item_id = self.overlap(text)
        if item_id is None or share < self.threshold:
            return None
        return f"eval overlap {share:.2f} with {item_id}"
