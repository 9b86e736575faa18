"""Content rules for outbound marketing texts: blocked terms, patterns, public URL shorteners.

Carriers filter texts with public URL shorteners (CTIA Messaging Principles:
shared shortener domains are a spam signal), so they are blocked by default;
terms and patterns are the tenant's to configure.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

DEFAULT_SHORTENERS = (
    "bit.ly", "tinyurl.com", "goo.gl", "t.co", "ow.ly", "is.gd", "buff.ly", "rebrand.ly",
    "cutt.ly", "shorturl.at", "tiny.cc", "bit.do", "t.ly", "rb.gy", "s.id",
)
_URL_HOST = re.compile(r"(?:https?://)?(?:www\.)?([a-z0-9-]+(?:\.[a-z0-9-]+)+)(?=[/\s?#:]|$)",
                       re.IGNORECASE)
# Opt-out language already present: "Reply STOP", "Text STOP", "STOP to end", "opt out"...
_HAS_OPT_OUT_LANGUAGE = re.compile(
    r"\b(?:reply|text|send|txt)\s+stop\b|\bstop\s+to\s+(?:opt|end|cancel|unsubscribe|quit)"
    r"|\bopt[\s-]?out\b|\bunsubscribe\b", re.IGNORECASE)
STOP_FOOTER = " Reply STOP to opt out."


@dataclass(frozen=True)
class ContentRules:
    blocked_terms: tuple[str, ...] = ()
    blocked_patterns: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = DEFAULT_SHORTENERS

    @cached_property
    def _terms(self) -> re.Pattern[str] | None:
        if not self.blocked_terms:
            return None
        alts = "|".join(re.escape(t) for t in self.blocked_terms)
        return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)

    @cached_property
    def _patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p, re.IGNORECASE) for p in self.blocked_patterns)

    def violation(self, body: str) -> str | None:
        """A sentence naming the first rule the body breaks, or None. The rules see the
        body folded (``fold``), so full-width letters or a zero-width space inside a term
        do not slip past it."""
        body = fold(body)
        if self._terms is not None and (m := self._terms.search(body)):
            return f"the text contains the blocked term '{m.group(0)}'"
        for pattern in self._patterns:
            if pattern.search(body):
                return f"the text matches the blocked pattern '{pattern.pattern}'"
        for host in hosts_in(body):
            if any(host == d or host.endswith("." + d) for d in self.blocked_domains):
                return (f"the text links to {host}, a public URL shortener carriers filter; "
                        "use a branded domain")
        return None


def fold(text: str) -> str:
    """NFKC (full-width and compatibility forms to plain ones) without format characters
    (zero-width spaces and joiners, soft hyphens, direction marks)."""
    folded = unicodedata.normalize("NFKC", text)
    if folded.isascii():
        return folded
    return "".join(c for c in folded if unicodedata.category(c) != "Cf")


def hosts_in(body: str) -> Iterable[str]:
    for m in _URL_HOST.finditer(body):
        yield m.group(1).lower()


def has_opt_out_language(body: str) -> bool:
    return _HAS_OPT_OUT_LANGUAGE.search(body) is not None


def validate_patterns(patterns: Iterable[str]) -> None:
    """Raise ValueError naming a pattern that does not compile (checked at start-up)."""
    for p in patterns:
        try:
            compiled = re.compile(p, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"blocked pattern {p!r} is not a valid regular expression: {exc}"
                             ) from None
        if compiled.search("") is not None:
            raise ValueError(f"blocked pattern {p!r} matches the empty text, so it would "
                             "block every message")


def clean_terms(terms: Iterable[str]) -> tuple[str, ...]:
    """Blocked terms as they are matched: folded and stripped; an empty one is refused
    (it would block any text with punctuation or a double space)."""
    out = []
    for term in terms:
        cleaned = fold(term).strip()
        if not cleaned:
            raise ValueError(f"blocked term {term!r} is empty once spaces are stripped")
        out.append(cleaned)
    return tuple(out)
