"""Inbound SMS intent: opt-out, opt-in, help, or nothing.

A pure module (no I/O): :func:`normalize_reply` turns a reply into the text the
rules see; :func:`classify` says what the sender asked for and which rule said so.

Normalisation (one pass, precomputed tables, linear time):

* Apostrophes are dropped (``don't`` -> ``dont``), then NFKC (full-width,
  mathematical, circled and superscript letters become ASCII), look-alike
  capitals (Cyrillic and Greek ``Ѕ Т О Р С Е А Η``) become Latin, case-fold,
  NFD and every combining mark is dropped (``ARRÊT`` -> ``arret``), look-alike
  small letters (Cyrillic, Greek, Armenian, small capitals ``ꜱᴛᴏᴘ``, regional
  indicator and negative-squared letters) become Latin.
* Invisible characters (zero-width space/joiners, LRM/RLM, word joiner, BOM,
  variation selectors, other format characters, controls) are removed; emoji,
  symbols and punctuation other than ``. , ! ? ; :`` become spaces, except the
  stop sign U+1F6D1, which becomes the word ``stop``; a line break and a dash
  with spaces around it count as ``.``.
* A run of ``.,!?;:`` keeps its first mark (``STOP!!!`` -> ``stop``), and marks
  at either end are stripped (``¡Baja!`` -> ``baja``); inside, a mark is kept
  attached to the word before it (``who is this? stop``) so the rules can see
  clauses.
* A letter repeated three times or more is squeezed to one (``STOOOP`` ->
  ``stop``), never below two letters in a word.
* Spelled-out letters are joined: ``S.T.O.P``, ``s t o p``, ``S-T-O-P``,
  ``S T O P`` -> ``stop`` (two or more single letters separated by spaces or
  dots).
* Words are separated by one space. ``normalize_reply`` is idempotent.

Classification, first rule that matches wins (``Intent.rule`` names it):

1. ``keyword:X`` -- the whole message is one keyword (CONTRACT "whole message,
   after normalisation"). ``polite:X`` -- keywords with politeness or
   complaint words around or between them, or repeated (``stop please``,
   ``ok STOP``, ``STOP STOP``, ``yes stop``, ``stop it's annoying``,
   ``wrong number, stop``). ``fuzzy:X`` -- the same, with one keyword one edit
   (insertion, deletion, substitution or swap of adjacent letters) away from an
   opt-out keyword of four letters or more (``stpo``, ``stopp``,
   ``unsubscibe``, ``cancle``). Common words at that distance are excluded
   (``step``, ``shop``, ``top``, ``cancer``, ``arrest``, ``provoke``...), and
   keywords too short or too close to ordinary words get no fuzzy match at all
   (END, TD, QUIT, ALTO, BAJA, REMOVE, PARAR). Opt-out wins over a bare YES or
   HELP in the same message (``yes stop``); START/UNSTOP together with an
   opt-out keyword is a conflict and goes to ops review.
2. ``phrase:...`` -- a clear opt-out sentence anywhere in the message (FCC 2024
   order: consent may be revoked by any reasonable means): ``stop texting me``,
   ``stop sending me ...``, ``stop these texts``, ``remove me from your list``,
   ``take me off``, ``remove my number``, ``opt me out``, ``unsubscribe``,
   ``no more texts``, ``don't text me``, ``I don't want these messages``,
   ``leave me alone``, ``I want out``, ``I want to be removed``,
   ``I revoke my consent``, ``I already unsubscribed``, ``why do you keep
   texting me``, and Spanish/French equivalents. Phrases do not cross a
   clause mark, and a phrase right after a negation (``don't stop texting
   me``, ``I don't want to unsubscribe``) does not count. The whole message
   ``wrong number`` (or such a clause) is an opt-out too.
3. ``clause:X`` -- one clause of a longer message is an opt-out keyword with
   only politeness around it (``STOP. Sent from my iPhone``, ``Stop - Mike``).
   Keywords that are also ordinary words (CANCEL, REMOVE, TD, BAJA, ALTO,
   PARAR/PARA, CANCELAR, DETENER, NO MORE, BASTA) never count on this level:
   ``Changed my mind. Cancel`` is likely about an order, so ops review it, while
   ``Wrong number. Cancel`` and ``Who is this? Cancel`` are rule 1 (complaint
   words around a keyword). A clause with START or UNSTOP makes the whole
   message a conflict for ops (``Stop! Start!``).
4. ``none``. ``possible_opt_out`` is set when an opt-out keyword or verb, or a
   complaint (``spam``, ``not interested``, ``who is this``...), appears
   anywhere: ops review these; they are never silently dropped (COMPLIANCE,
   "what providers miss").

Opt-in is only START, UNSTOP or YES (with politeness: ``yes please``,
``start again``); re-consent must be explicit, so ``subscribe``, ``opt in``,
``yeah`` are not opt-ins. Help is HELP, INFO (AYUDA, AIDE) and ``I need help``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["Intent", "IntentKind", "classify", "normalize_reply"]


class IntentKind(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    NONE = "none"


@dataclass(frozen=True)
class Intent:
    kind: IntentKind
    rule: str
    """Which rule matched: ``keyword:STOP``, ``polite:STOP``, ``fuzzy:STOP``,
    ``phrase:stop texting me``, ``clause:STOP`` or ``none``."""
    possible_opt_out: bool = False
    """Kind NONE, but an opt-out word or complaint appears: for ops review."""
    normalized: str = ""
    """The normalised text the rules saw."""


# --------------------------------------------------------------------------- normalisation

_CLAUSE_MARKS: Final = ".,!?;:"
_CLAUSE_SET: Final = frozenset(_CLAUSE_MARKS)
_CHAR_CACHE_MAX: Final = 65_536

# Dropped before NFKC: NFKC turns U+00B4 into a space plus a combining accent.
_APOSTROPHES: Final = "'`\u00b4\u2018\u2019\u201b\u02b9\u02bb\u02bc\u02bd\u2032\uff07"
_PRE: Final = {ord(c): None for c in _APOSTROPHES}

# Capitals mapped before case-folding, so Greek Eta (looks like H) does not become eta (n).
_UPPER_LOOKALIKES: Final = {
    ord(k): v
    for k, v in (
        pair.split(":")
        for pair in (
            # Cyrillic, then Greek
            "А:a В:b Е:e К:k М:m Н:h О:o Р:p С:c Т:t Х:x У:y Ѕ:s І:i Ј:j Ԛ:q Ԝ:w Ӏ:l Ү:y "
            "Α:a Β:b Ε:e Ζ:z Η:h Ι:i Κ:k Μ:m Ν:n Ο:o Ρ:p Τ:t Υ:y Χ:x"
        ).split()
    )
}
# Small look-alikes (Cyrillic, Greek, Armenian, Latin variants, small capitals), mapped
# after case-folding and NFD (so ё -> е + mark -> e).
_LOWER_LOOKALIKES: Final = dict(
    pair.split(":")
    for pair in (
        "а:a в:b е:e к:k м:m н:h о:o р:p с:c т:t у:y х:x ѕ:s і:i ј:j ԁ:d һ:h ԛ:q ԝ:w ӏ:l ү:y "
        "ο:o α:a ε:e ι:i κ:k ν:v ρ:p τ:t υ:u χ:x ω:w η:n "
        "օ:o ս:u ո:n հ:h ı:i ȷ:j ɑ:a ɡ:g "
        "ᴀ:a ʙ:b ᴄ:c ᴅ:d ᴇ:e ꜰ:f ɢ:g ʜ:h ɪ:i ᴊ:j ᴋ:k ʟ:l ᴍ:m ɴ:n ᴏ:o ᴘ:p ǫ:q ʀ:r ꜱ:s ᴛ:t "
        "ᴜ:u ᴠ:v ᴡ:w ʏ:y ᴢ:z"
    ).split()
)
_STOP_SIGN: Final = 0x1F6D1  # OCTAGONAL SIGN, a reply of its own means "stop"
_LINE_BREAKS: Final = frozenset("\n\r\x85\u2028\u2029")
_CLAUSE_EXTRA: Final = {"\u3002": ".", "\uff61": ".", "\u3001": ",", "\u061f": "?", "\u060c": ","}
_DROP_CATEGORIES: Final = frozenset({"Mn", "Me", "Mc", "Cf", "Cs", "Co", "Cn"})
# Regional indicators, negative circled and negative squared letters (no NFKC form).
_LETTER_BLOCKS: Final = (0x1F1E6, 0x1F150, 0x1F170)


def _map_char(cp: int) -> str | None:
    """Where one character (already NFKC, case-folded, NFD) goes; None deletes it."""
    ch = chr(cp)
    if ch in _LOWER_LOOKALIKES:
        return _LOWER_LOOKALIKES[ch]
    if ch in _CLAUSE_SET:
        return ch
    if ch in _LINE_BREAKS:
        return "."
    if ch in _CLAUSE_EXTRA:
        return _CLAUSE_EXTRA[ch]
    if cp in _PRE:
        return None
    if cp == _STOP_SIGN:
        return " stop "
    for start in _LETTER_BLOCKS:
        if start <= cp < start + 26:
            return chr(ord("a") + cp - start)
    category = unicodedata.category(ch)
    if category[0] in "LN":
        return ch
    if category in _DROP_CATEGORIES:
        return None
    if category == "Cc":
        return " " if ch.isspace() else None
    return " "  # punctuation, symbols (emoji included), separators


class _CharTable(dict[int, str | None]):
    """A ``str.translate`` table filled on first use, bounded in size."""

    def __missing__(self, cp: int) -> str | None:
        value = _map_char(cp)
        if len(self) < _CHAR_CACHE_MAX:
            self[cp] = value
        return value


_CHARS: Final = _CharTable()
_ASCII: Final = {cp: _map_char(cp) for cp in range(128)}

# A dash with space on both sides breaks a clause: "Stop - Mike", "wrong number - stop".
_SPACED_DASH_RE: Final = re.compile(r"(?<=\s)[-\u2010-\u2015\u2212\ufe58\ufe63\uff0d]+(?=\s)")
_TOKEN_RE: Final = re.compile(r"[.,!?;:]+|[^\s.,!?;:]+")
_ELONGATED_RE: Final = re.compile(r"([^\W\d_])\1{2,}")


def _squeeze(word: str) -> str:
    squeezed = _ELONGATED_RE.sub(r"\1", word)
    if len(squeezed) < 2 <= len(word):
        return word[:2]  # "aaa" -> "aa": never create a single letter
    return squeezed


def _is_single(tok: str) -> bool:
    return len(tok) == 1 and tok.isalpha()


def _marks_and_squeeze(raw: list[str], squeeze: bool) -> list[str]:
    out: list[str] = []
    for tok in raw:
        if tok[0] in _CLAUSE_SET:
            if out and out[-1][0] not in _CLAUSE_SET:
                out.append(tok[0])
        else:
            out.append(_squeeze(tok) if squeeze else tok)
    if out and out[-1] in _CLAUSE_SET:
        out.pop()
    return out


def _join_spelled(tokens: list[str]) -> list[str]:
    """``s . t . o . p`` / ``s t o p`` -> ``stop``."""
    out: list[str] = []
    i, n = 0, len(tokens)
    while i < n:
        if not _is_single(tokens[i]):
            out.append(tokens[i])
            i += 1
            continue
        letters = [tokens[i]]
        j = i + 1
        while j < n:
            if _is_single(tokens[j]):
                letters.append(tokens[j])
                j += 1
            elif tokens[j] == "." and j + 1 < n and _is_single(tokens[j + 1]):
                letters.append(tokens[j + 1])
                j += 2
            else:
                break
        out.append(_squeeze("".join(letters)) if len(letters) > 1 else letters[0])
        i = j
    return out


def _tokens(body: str) -> list[str]:
    body = _SPACED_DASH_RE.sub(".", body)
    if body.isascii():
        text = body.lower().translate(_ASCII)
    else:
        text = unicodedata.normalize("NFKC", body.translate(_PRE))
        text = text.translate(_UPPER_LOOKALIKES).casefold()
        text = unicodedata.normalize("NFD", text).translate(_CHARS)
        text = unicodedata.normalize("NFC", text)
    squeeze = _ELONGATED_RE.search(text) is not None
    return _join_spelled(_marks_and_squeeze(_TOKEN_RE.findall(text), squeeze))


def _render(tokens: list[str]) -> str:
    parts: list[str] = []
    for tok in tokens:
        if parts and tok[0] not in _CLAUSE_SET:
            parts.append(" ")
        parts.append(tok)
    return "".join(parts)


def normalize_reply(body: str) -> str:
    """The text the intent rules see (see the module docstring); idempotent."""
    return _render(_tokens(body))


# --------------------------------------------------------------------------- lexicon

# Roles of the words of a "keyword with politeness" message.
_OUT_STRONG: Final = "out"
_OUT_WEAK: Final = "out-weak"  # an ordinary word too: never one clause of a longer message
_IN: Final = "in"
_YES: Final = "yes"  # opt-in alone, politeness next to an opt-out
_HELP: Final = "help"
_FILL: Final = "fill"
_FILL_OUT: Final = "fill-out"  # only next to an opt-out keyword
_FILL_STRONG: Final = "fill-strong"  # only next to a strong opt-out keyword ("stop it")

_KEYWORDS: Final[dict[str, tuple[str, str]]] = {
    # Twilio defaults, AWS, Telnyx/Plivo, FCC "opt out" (COMPLIANCE, SMS keywords).
    "stop": (_OUT_STRONG, "STOP"),
    "stopall": (_OUT_STRONG, "STOPALL"),
    "stop all": (_OUT_STRONG, "STOP ALL"),
    "unsubscribe": (_OUT_STRONG, "UNSUBSCRIBE"),
    "un subscribe": (_OUT_STRONG, "UNSUBSCRIBE"),
    "unsub": (_OUT_STRONG, "UNSUB"),
    "end": (_OUT_STRONG, "END"),
    "quit": (_OUT_STRONG, "QUIT"),
    "revoke": (_OUT_STRONG, "REVOKE"),
    "optout": (_OUT_STRONG, "OPTOUT"),
    "opt out": (_OUT_STRONG, "OPT OUT"),
    "arret": (_OUT_STRONG, "ARRET"),
    "arreter": (_OUT_STRONG, "ARRETER"),
    "arretez": (_OUT_STRONG, "ARRETER"),
    "desabonner": (_OUT_STRONG, "DESABONNER"),
    "desinscrire": (_OUT_STRONG, "DESINSCRIRE"),
    "no mas": (_OUT_STRONG, "NO MAS"),
    "desuscribir": (_OUT_STRONG, "DESUSCRIBIR"),
    "cancel": (_OUT_WEAK, "CANCEL"),
    "remove": (_OUT_WEAK, "REMOVE"),
    "td": (_OUT_WEAK, "TD"),
    "baja": (_OUT_WEAK, "BAJA"),
    "parar": (_OUT_WEAK, "PARAR"),
    "para": (_OUT_WEAK, "PARAR"),  # its imperative; also "for", hence weak
    "cancelar": (_OUT_WEAK, "CANCELAR"),
    "alto": (_OUT_WEAK, "ALTO"),
    "detener": (_OUT_WEAK, "DETENER"),
    "basta": (_OUT_WEAK, "BASTA"),
    "no more": (_OUT_WEAK, "NO MORE"),
    "start": (_IN, "START"),
    "unstop": (_IN, "UNSTOP"),
    "yes": (_YES, "YES"),
    "help": (_HELP, "HELP"),
    "info": (_HELP, "INFO"),
    "ayuda": (_HELP, "AYUDA"),
    "aide": (_HELP, "AIDE"),
}

# Comma-separated phrases; longest match wins when a reply is split into them.
_FILLERS: Final = {
    _FILL: (
        "please, pls, plz, plse, pleas, plez, pleez, plss, thanks, thank you, thankyou, "
        "thank u, thx, thnx, tnx, ty, ok, okay, okey, k, kk, now, right now, asap, "
        "immediately, already, just, sir, maam, hi, hello, hey, hola, bonjour, sorry, svp, "
        "sil vous plait, sil te plait, merci, por favor, porfa, porfavor, favor, gracias, "
        "again, oh, um, uh, ugh, omg, bye, goodbye, adios, seriously, for real, for good, "
        "forever, permanently, today, guys, dude, man, bro, thanks bye"
    ),
    _FILL_OUT: (
        "me, all, everything, i, no, but, ya, enough, wrong number, wrong person, its annoying, "
        "annoying, this is annoying, so annoying, this is spam, spam, not interested, "
        "im not interested, i am not interested, who is this, whos this, go away, i said, "
        "i already said, for the last time, fuck off, stfu"
    ),
    _FILL_STRONG: "it, this, that, them, these, those, all of them, all of it, all this",
}


def _build_lexicon() -> dict[tuple[str, ...], tuple[str, str]]:
    lexicon: dict[tuple[str, ...], tuple[str, str]] = {}
    for role, phrases in _FILLERS.items():
        for phrase in phrases.split(","):
            lexicon.setdefault(tuple(phrase.split()), (role, ""))
    for phrase, entry in _KEYWORDS.items():
        lexicon[tuple(phrase.split())] = entry
    return lexicon


_LEXICON: Final = _build_lexicon()
_MAX_PHRASE_WORDS: Final = max(len(k) for k in _LEXICON)

# One edit away from these is a misspelling (module docstring, rule 1).
_FUZZY_TARGETS: Final = (
    "stop", "stopall", "unsubscribe", "unsub", "cancel", "revoke", "optout", "arret",
    "arreter", "desabonner", "cancelar",
)
# Ordinary words one edit away from a target: never a misspelt keyword.
_FUZZY_EXCLUDED: Final = frozenset(
    "step shop stoop stomp top atop stow slop sop strop swop stoa stot scop stob sto "
    "cancer candel camel provoke arrest garret barret arete".split()
)


def _one_edit(a: str, b: str) -> bool:
    """Optimal-string-alignment distance of exactly one (a != b)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        i = diffs[0]
        return len(diffs) == 2 and diffs[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


def _fuzzy_keyword(word: str) -> str | None:
    # A digit may stand in for a letter (st0p, 5top), but a word needs three letters.
    if len(word) < 3 or not (word.isascii() and word.isalnum()) or word in _FUZZY_EXCLUDED:
        return None
    if sum(c.isalpha() for c in word) < 3:
        return None
    for target in _FUZZY_TARGETS:
        if _one_edit(word, target):
            return target
    return None


# --------------------------------------------------------------------------- word sequences


@dataclass(frozen=True)
class _Match:
    kind: IntentKind
    label: str
    how: str  # "keyword", "polite" or "fuzzy"
    strong: bool


def _scan(words: list[str], fuzzy: bool) -> list[tuple[str, str, bool]] | None:
    """Split words into lexicon entries (role, label, fuzzy?); None if a word is unknown."""
    items: list[tuple[str, str, bool]] = []
    i, n = 0, len(words)
    while i < n:
        for size in range(min(_MAX_PHRASE_WORDS, n - i), 0, -1):
            entry = _LEXICON.get(tuple(words[i:i + size]))
            if entry is not None:
                items.append((entry[0], entry[1], False))
                i += size
                break
        else:
            target = _fuzzy_keyword(words[i]) if fuzzy else None
            if target is None:
                return None
            role, label = _KEYWORDS[target]
            items.append((role, label, True))
            i += 1
    return items


def _judge(items: list[tuple[str, str, bool]]) -> _Match | None:
    roles = [role for role, _, _ in items]
    keywords = [(role, label, fz) for role, label, fz in items if not role.startswith("fill")]
    out = [k for k in keywords if k[0] in (_OUT_STRONG, _OUT_WEAK)]
    how = "keyword" if len(items) == 1 else "polite"
    if out:
        strong = any(k[0] == _OUT_STRONG for k in out)
        if _IN in roles or (_FILL_STRONG in roles and not strong):
            return None  # STOP next to START: a conflict for ops
        first = out[0]
        return _Match(IntentKind.OPT_OUT, first[1], "fuzzy" if first[2] else how, strong)
    if _FILL_OUT in roles or _FILL_STRONG in roles or not keywords:
        return None
    kinds = {k[0] for k in keywords}
    if kinds <= {_IN, _YES}:
        return _Match(IntentKind.OPT_IN, keywords[0][1], how, False)
    if kinds == {_HELP}:
        return _Match(IntentKind.HELP, keywords[0][1], how, False)
    return None


def _match_words(words: list[str], fuzzy: bool) -> _Match | None:
    if not words:
        return None
    items = _scan(words, fuzzy)
    return None if items is None else _judge(items)


def _strip_fillers(words: list[str]) -> list[str]:
    """Drop politeness words at both ends (``sorry wrong number`` -> ``wrong number``)."""
    lo, hi = 0, len(words)
    changed = True
    while changed and lo < hi:
        changed = False
        for size in (3, 2, 1):
            if hi - lo >= size:
                if _LEXICON.get(tuple(words[lo:lo + size]), ("",))[0] == _FILL:
                    lo += size
                    changed = True
                    break
                if _LEXICON.get(tuple(words[hi - size:hi]), ("",))[0] == _FILL:
                    hi -= size
                    changed = True
                    break
    return words[lo:hi]


# --------------------------------------------------------------------------- phrases

# Building blocks. Every repetition is over literal words or one [^\W\d_]+ word,
# never nested, so matching stays linear in the length of the message.
_END = (
    r"(?: (?:please|pls|plz|now|right now|thanks|thank you|thx|ty|asap|immediately|already"
    r"|too|as well|also|again|for good|permanently|forever|completely|today|sir|maam|ok"
    r"|okay))*(?=[.,!?;:]|$)"
)
_DET = (
    r"(?:(?:all|any) (?:of )?)?(?:(?:these|the|your|ur|this|those|that|such|future|further"
    r"|more|any more|anymore|my|ya|all|any|los|sus|estos|tus|des|vos|ces|les) )?"
)
_MOD = r"(?:[^\W\d_]+ )?"
_MSGS = (
    r"(?:text messages?|texts?|txts?|msgs?|messages?|sms(?: messages)?|spam|notifications?"
    r"|notifs?|alerts?|promos?|promotions?|promotional messages|ads|advertisements?"
    r"|advertising|marketing|solicitations?|robotexts?|mensajes|textos|publicidad"
    r"|promociones)\b"
)
_LIST = (
    r"(?:(?:mailing|texting|text|sms|contact|marketing|distribution|call|calling|subscriber"
    r"|subscription|promo|promotional|messaging|sending) )?(?:list|lists|database|system"
    r"|contacts|registry)\b"
)
_ME = r"(?:me|us|u|my (?:phone|number|cell|mobile|line)|this (?:number|phone|line))\b"
_TEXTING = (
    r"(?:texting|txting|texing|textin|txtin|messaging|msging|messageing|contacting|spamming"
    r"|bothering|harassing|pestering|hitting|blowing up|sending messages to"
    r"|sending texts to|text|txt|message|msg|contact|spam|bother|harass)"
)
# "Stop calling me" alone is about calls, not texts: ops review. With texting, it counts.
_CALLING = r"(?:(?:calling|call|emailing|email)(?: and| or| nor)? )?"
# "don't text me the code", "don't text me after 9": a partial request, for ops.
_NOT_AFTER_ME = (
    r"(?:the|a|an|your|it|that|this|when|if|back|about|before|after|until|till|at|on|in"
    r"|tomorrow|today|tonight|yet|later|now|during|while|between|with|for)\b"
)
_ES_SEND = (
    r"(?:envie|envien|envies|enviar|manden|mande|mandes|mandar|escriban|escribas|escriba"
    r"|contacten|contactes|molesten|moleste|molestes|llamen)"
)

_PHRASES: Final[tuple[tuple[str, str], ...]] = (
    (
        "stop texting me",
        rf"\b(?:stop|quit|cease|stp)(?: it)? {_CALLING}{_TEXTING}"
        rf"(?:(?: and| or)? (?:calling|call|{_TEXTING}))? {_ME}",
    ),
    (
        "stop sending",
        rf"\b(?:stop|quit|cease) (?:sending|send|sendin)(?: (?:me|us|this number|my phone))?"
        rf"(?: {_DET}{_MOD}(?:{_MSGS}|(?:stuff|things|crap|junk|deals|offers|coupons|links"
        rf"|this|these|them|those|that|anything|everything)\b)|{_END})",
    ),
    (
        "stop texting",
        rf"\b(?:stop|quit|cease)(?: all)? (?:the )?(?:texting|txting|messaging|msging|spamming"
        rf"|contacting){_END}",
    ),
    (
        "stop these texts",
        rf"\b(?:(?:stop|quit|cease|end|cancel|halt|pause|discontinue)(?: with)?"
        rf"|unsubscribe from|unsub from|opt out of|opt me out of"
        rf"|(?:stop|quit|cease) (?:receiving|getting)) {_DET}{_MOD}{_MSGS}"
        rf"|\b(?:stop|quit|cease) (?:receiving|getting) (?:these|them|those|this|it|any)"
        rf"(?: (?:anymore|any more))?{_END}",
    ),
    (
        "no more texts",
        rf"\b(?:no (?:more|mas)|plus de|enough (?:with|of)(?: all)?) {_DET}{_MOD}{_MSGS}",
    ),
    (
        "dont want texts",
        rf"\b(?:(?:dont|do not|not|no longer) (?:want|wish|need) (?:to (?:receive|get) )?"
        rf"|no longer (?:receive|get) ){_DET}{_MOD}{_MSGS}",
    ),
    (
        "remove me from your list",
        rf"\b(?:remove|delete|erase|drop|scratch|take|get|cross|unsubscribe|unsub|opt) me"
        rf" (?:(?:off (?:of )?|from |out of ){_DET}{_MOD}(?:{_LIST}|{_MSGS})"
        rf"|(?:off|from|out)(?: of)? (?:this|it|these|them|everything|all|here|there|that)"
        rf"{_END})"
        rf"|\b(?:get|be|stay) (?:off|removed from|taken off) (?:of )?{_DET}{_MOD}{_LIST}",
    ),
    (
        "remove me",
        rf"\b(?:(?:remove|delete|erase|unsubscribe|unsub|drop|scratch|cancel) me"
        rf"|(?:take|get|opt|count|sign|cross) me (?:off|out)){_END}",
    ),
    (
        "remove my number",
        rf"\b(?:remove|delete|erase|drop|lose|forget|scrub|take) (?:my|this) (?:phone |cell "
        rf"|mobile |cell phone )?(?:number|phone|cell|info|information|data|contact info"
        rf"|contact information|contact|details|digits|num)"
        # "remove my number from the order" is an order change: ops review.
        rf"(?: (?:off|out)\b| from {_DET}{_MOD}(?:{_LIST}|{_MSGS}|files?|records?)|{_END})",
    ),
    (
        "opt out",
        # "opt out of the warranty" is about something else: ops review.
        rf"\b(?:(?:opt|opting|opt me|opt us) (?:out|outta)|optout)\b(?! of (?!{_DET}{_MOD}"
        rf"(?:{_MSGS}|{_LIST})|(?:this|these|it|everything|all|them|that)\b))",
    ),
    (
        "unsubscribe",
        r"\b(?:unsubscribe|unsubscribing|unsub|unsuscribe|desabonner|desabonnez|desabonne"
        r"|desinscrire|desinscrivez|desinscription|desabonnement|desuscribir|desuscribirme"
        r"|desuscribanme|desuscribeme)\b"
        # "unsubscribe me from your emails" is about email, not this channel: ops review.
        r"(?! (?:me )?from (?:the |your |all |these |ur )?(?:emails?|e mails?|newsletters?"
        r"|mail|mailing list)\b)",
    ),
    ("dar de baja", r"\b(?:dar|darme|dame|deme|denme|dan|dad|doy|me doy|darse) de baja\b"),
    (
        "already unsubscribed",
        r"(?<!was )(?<!were )(?<!got )(?<!been )(?<!be )\b(?:i|ive|i have|i had|i already"
        r"|ive already|i have already|i just|i did|we|weve|we already|i literally|i even)"
        r" (?:already )?(?:unsubscribed|opted out|(?:said|replied|texted|sent|typed|wrote"
        r"|answered|responded) stop|(?:asked|told) (?:you )?(?:to stop|to remove me"
        r"|to unsubscribe|to take me off|not to text)|asked to be removed)"
        r"|\b(?:have to|need to|gotta|must) (?:say|tell you|text|reply|type|write|send)"
        r"(?: you)?(?: to)? stop\b",
    ),
    (
        "still getting texts",
        rf"\b(?:(?:still|keep|keeps) (?:getting|receiving|sending(?: me)?) {_DET}{_MOD}{_MSGS}"
        rf"|(?:you|u|yall|why do you|why do u|why are you|why r u)(?: guys)? (?:still|keep"
        rf"|keeps|continue to|are still|r still)(?: on)? (?:texting|txting|messaging|spamming"
        rf"|contacting|bothering|harassing)\b)",
    ),
    ("leave me alone", r"\b(?:leave|let) (?:me|us) (?:the (?:hell|heck) )?alone\b"),
    (
        "i want out",
        rf"\b(?:i want|i wanna|i would like|id like|count me|get me|let me|i need) out"
        rf"(?:{_END}| of (?:this|these|it)\b| of {_DET}{_MOD}(?:{_LIST}|{_MSGS}))",
    ),
    (
        "i want to be removed",
        r"\b(?:want|wanna|like|need|wish|asked|ask|please|request) (?:to )?(?:be|get)"
        r" (?:removed|taken off|unsubscribed|opted out|deleted|unenrolled)\b",
    ),
    (
        "i want to stop",
        rf"\b(?:want|wanna|would like|id like|need|wish) to (?:stop|quit|end this|leave"
        rf"|get out|stop this|stop these|stop it|stop all this){_END}",
    ),
    (
        "revoke consent",
        r"\b(?:(?:revoke|revoking|withdraw|withdrawing|retract|rescind|cancel|cancelling"
        r"|canceling|remove|pull) (?:my |all |any |the )?(?:consent|permission"
        r"|authorization|authorisation|opt in|optin)"
        r"|(?:i )?(?:do not|dont|did not|didnt|never|no longer) (?:consent|agree|agreed"
        r"|consented|authorize|authorized) to (?:these|this|your|any|receive|receiving|get"
        r"|getting|be (?:texted|contacted)))\b",
    ),
    (
        "dont text me",
        rf"(?<!why )\b(?:dont|do not|never)(?: you)?(?: ever)? {_CALLING}(?:text|txt|message"
        rf"|msg|sms|contact|spam|bother|harass)(?:(?: and| or| nor)? (?:call|email))?"
        rf" {_ME}(?! {_NOT_AFTER_ME})",
    ),
    (
        "dont text",
        rf"\b(?:dont|do not|never)(?: ever)? (?:text|txt|message|msg|contact)"
        rf"(?: (?:again|anymore|any more|this number))?{_END}",
    ),
    (
        "dont send me texts",
        rf"\b(?:dont|do not|never)(?: ever)? send (?:me |us )?(?:any more |anymore |more "
        rf"|any )?{_DET}{_MOD}{_MSGS}",
    ),
    (
        "dont want you to text me",
        rf"\b(?:dont|do not|no longer) (?:want|wish|need) (?:you |u |anyone )?to (?:text|txt"
        rf"|message|msg|contact|spam|bother) {_ME}",
    ),
    (
        "es: no me envien mas",
        rf"\b(?:no|ya no|nunca) (?:me |nos )?{_ES_SEND} (?:mas|ningun|ninguna"
        rf"|{_MOD}(?:mensajes|mensaje|textos|sms|publicidad|promociones)\b)",
    ),
    (
        "es: no quiero mas mensajes",
        r"\b(?:no|ya no) (?:quiero|deseo|necesito) (?:recibir )?(?:mas )?(?:sus |estos |los "
        r"|tus |ningun |ningunos )?(?:mensajes|textos|sms|promociones|publicidad|mensajitos)\b",
    ),
    (
        "es: dejen de enviarme",
        r"\bdej(?:a|e|en|ar|ad|es) de (?:enviar|mandar|escribir|molestar|contactar)(?:me|nos)?\b",
    ),
    (
        "fr: arretez de menvoyer",
        r"\b(?:arretez|arrete|arreter|cessez|cesse|stop) (?:de (?:menvoyer|m envoyer|mecrire"
        r"|me contacter|mappeler|me harceler|nous envoyer)|denvoyer|decrire)\b",
    ),
    (
        "fr: ne menvoyez plus",
        r"\bne (?:(?:menvoyez|m envoyez|mecrivez|me contactez|mappelez) plus"
        r"|plus (?:menvoyer|m envoyer|mecrire|me contacter|mappeler))\b",
    ),
)
_PHRASE_LABELS: Final = tuple(label for label, _ in _PHRASES)
_PHRASE_RE: Final = re.compile(
    "|".join(f"(?P<p{i}>{pattern})" for i, (_, pattern) in enumerate(_PHRASES))
)
# A phrase right after one of these is negated ("don't stop texting me").
_NEGATED_RE: Final = re.compile(
    r"\b(?:dont|do not|didnt|did not|doesnt|does not|wont|will not|cant|cannot|can not|not"
    r"|never|shouldnt|wouldnt|no need to)(?: (?:want|wanna|wish|need|like|mean|plan|intend"
    r"|ever|even|have|going))?(?: to)? $"
)
_NEGATION_WINDOW: Final = 48
_WORD_RE: Final = re.compile(r"[^\s.,!?;:]+")

# Whole replies (or whole clauses) that are opt-outs only when they stand alone:
# "wrong number" (but not "did I give you the wrong number?"), "go away".
_ALONE_RE: Final = re.compile(
    r"(?P<wrong>(?:(?:you have|you got|u have|youve got|this is|its|thats|that is) )?"
    r"(?:the |a )?wrong (?:number|person|num|no)(?: (?:buddy|pal|mate|dude|bro))?)"
    r"|(?P<away>go away|fuck off|f off|piss off|get lost|buzz off|bugger off|leave me be"
    r"|lose my number|forget my number)"
)
_ALONE_LABELS: Final = {"wrong": "phrase:wrong number", "away": "phrase:go away"}
_HELP_RE: Final = re.compile(
    r"(?:i )?(?:need|want|would like|could use) (?:some |more )?(?:help|info|information)"
    r"|help me|more info|more information"
)
_POSSIBLE_RE: Final = re.compile(
    r"\b(?:stop\w*|stp|unsub\w*|unsuscrib\w*|cancel\w*|quit(?:s|ting)?|end|revok\w*|discontinu\w*"
    r"|opt(?:ed|ing)? ?out|optout|remove\w*|delete|arret\w*|td|baja|parar|cancelar|alto"
    r"|detener|basta|no mas|no more|desabonn\w*|desinscri\w*|desuscrib\w*|spam\w*"
    r"|harass\w*|stfu|block\w*|report\w*|lawyer|attorney|sue|tcpa|fcc|ftc|not interested"
    r"|who is this|whos this|how did you get|go away|leave me|unsolicited|scam\w*"
    r"|(?:im|i am|were|we are) done|enough|fuck off|f off|never signed up|didnt sign up"
    r"|did not sign up|why (?:are|do) you (?:keep )?(?:texting|messaging)|wrong number"
    r"|(?:dont|do not|never) (?:text|txt|message|msg|contact|call))\b"
)


def _phrase(norm: str) -> str | None:
    # Every phrase starts at a word: trying only there is ~3x faster than a scan.
    for word in _WORD_RE.finditer(norm):
        start = word.start()
        m = _PHRASE_RE.match(norm, start)
        if m is None or m.lastgroup is None:
            continue
        if _NEGATED_RE.search(norm, max(0, start - _NEGATION_WINDOW), start):
            continue
        return _PHRASE_LABELS[int(m.lastgroup[1:])]
    return None


def _clauses(tokens: list[str]) -> list[list[str]]:
    clauses: list[list[str]] = [[]]
    for tok in tokens:
        if tok in _CLAUSE_SET:
            clauses.append([])
        else:
            clauses[-1].append(tok)
    return [c for c in clauses if c]


def _clause_opt_out(clauses: list[list[str]]) -> str | None:
    rule: str | None = None
    for clause in clauses:
        found = _match_words(clause, fuzzy=False)
        if found is not None and found.kind is IntentKind.OPT_IN and found.label != "YES":
            return None  # "Stop! Start!": a conflict for ops
        if rule is not None:
            continue
        if found is not None and found.kind is IntentKind.OPT_OUT and found.strong:
            rule = f"clause:{found.label}"
            continue
        rule = _alone(clause)
    return rule


def _alone(words: list[str]) -> str | None:
    m = _ALONE_RE.fullmatch(" ".join(_strip_fillers(words)))
    return None if m is None or m.lastgroup is None else _ALONE_LABELS[m.lastgroup]


# --------------------------------------------------------------------------- classify


def classify(body: str) -> Intent:
    """What an inbound SMS asks for; see the module docstring for the rules."""
    tokens = _tokens(body)
    norm = _render(tokens)
    words = [t for t in tokens if t not in _CLAUSE_SET]

    found = _match_words(words, fuzzy=True)
    if found is not None:
        return Intent(found.kind, f"{found.how}:{found.label}", normalized=norm)
    alone = _alone(words)
    if alone is not None:
        return Intent(IntentKind.OPT_OUT, alone, normalized=norm)
    label = _phrase(norm)
    if label is not None:
        return Intent(IntentKind.OPT_OUT, f"phrase:{label}", normalized=norm)
    clauses = _clauses(tokens)
    if len(clauses) > 1:
        rule = _clause_opt_out(clauses)
        if rule is not None:
            return Intent(IntentKind.OPT_OUT, rule, normalized=norm)
    if _HELP_RE.fullmatch(" ".join(_strip_fillers(words))):
        return Intent(IntentKind.HELP, "phrase:i need help", normalized=norm)
    possible = _POSSIBLE_RE.search(norm) is not None
    return Intent(IntentKind.NONE, "none", possible_opt_out=possible, normalized=norm)
