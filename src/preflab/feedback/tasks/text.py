"""Text measurements shared by the gold scorers (Unicode-aware, deterministic)."""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]+(?:(?:['’-]|(?<=\d)[.,](?=\d))[^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])-?\d+(?:\.\d+)?")


def words(text: str) -> list[str]:
    """Word tokens: runs of Unicode letters/digits, keeping inner apostrophes and hyphens
    (``don't``, ``well-known``) and decimal points/commas inside numbers (``3.5``, ``1,000``).
    A run of CJK characters counts as one word."""
    return _WORD.findall(text)


def word_count(text: str) -> int:
    return len(words(text))


def distinct_words(text: str) -> int:
    """How many different words ``text`` uses (casefolded): a word repeated twenty times counts once, so a
    loop of one word cannot pass for a long answer."""
    return len({w.casefold() for w in words(text)})


def words_for(text: str, params: dict) -> int:
    """The word count a family's minimum length compares with: distinct words when the task sets
    ``distinct_words`` (every new task), plain :func:`word_count` for tasks written before that rule."""
    return distinct_words(text) if params.get("distinct_words") else word_count(text)


def contains_word(text: str, word: str) -> int:
    """How often ``word`` (or its plural with -s/-es) occurs as a whole word, case-insensitively."""
    target = word.casefold()
    forms = {target, target + "s", target + "es"}
    return sum(1 for w in words(text) if w.casefold() in forms)


def numbers(text: str) -> list[float]:
    """Every number in ``text`` in order (``-12``, ``3.5``, ``1,234``)."""
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


def cased_letters(text: str) -> list[str]:
    """Letters that have an upper/lower case distinction (Latin, Greek, Cyrillic …; not CJK)."""
    return [c for c in text if c.isalpha() and c.lower() != c.upper()]


def normalise(text: str) -> str:
    """Casefolded, whitespace collapsed, straight quotes, surrounding quotes/space stripped."""
    text = text.replace("’", "'").replace("“", '"').replace("”", '"')
    return " ".join(text.casefold().split()).strip(" \"'*_`")


def matches_word(word: str, target: str) -> bool:
    """``word`` is ``target`` or an inflection of it: plural -s/-es/-ies, or any longer word when ``target`` has
    five letters or more (``rain`` ≠ ``rainbow`` but ``ocean`` ~ ``oceans``, ``bread`` ~ ``breads``,
    ``climb`` ~ ``climbing``). Both casefolded by the caller."""
    if word in (target, target + "s", target + "es"):
        return True
    if target.endswith("y") and word == target[:-1] + "ies":
        return True
    return len(target) >= 5 and word.startswith(target)


def mentions(text: str, targets) -> int:
    """How many of ``targets`` (words) occur in ``text`` (see :func:`matches_word`)."""
    found = [w.casefold() for w in words(text)]
    return sum(1 for t in targets if any(matches_word(w, t.casefold()) for w in found))


def off_topic(response: str, params: dict, key: str = "topic_words") -> bool:
    """The task lists words its answers must name (``params[key]``) and ``response`` names none of them."""
    return bool(params.get(key)) and not mentions(response, params[key])


def echoes(response: str, prompt: str) -> bool:
    """The response mostly repeats the prompt: half or more of its word trigrams (casefolded) occur in the
    prompt. Answers under three words have no trigram and never echo (``42`` may well be in the prompt)."""
    got = [w.casefold() for w in words(response)]
    src = [w.casefold() for w in words(prompt)]
    if len(got) < 3:
        return False
    grams = [tuple(got[i : i + 3]) for i in range(len(got) - 2)]
    seen = {tuple(src[i : i + 3]) for i in range(len(src) - 2)}
    return sum(1 for g in grams if g in seen) * 2 >= len(grams)
