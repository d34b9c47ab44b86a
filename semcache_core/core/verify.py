"""Does a semantic candidate answer the same request? A pure, rule-based verifier.

Cosine similarity ranks candidates; it does not prove two requests want the same answer.
"Extract the date: 04/05/2024" and "... 05/04/2024" score 0.9997 with MiniLM. The most
dangerous near-miss is a small edit inside otherwise identical text, and it scores
highest precisely because little changed. So the verifier compares what the two
questions say, not how close their vectors are:

* **Protected details must agree**: numbers and amounts (``3`` and ``three`` are the
  same), dates, times, months and weekdays, relative times (``tomorrow``, ``next week``),
  units and currencies, quoted strings, code identifiers, e-mail addresses and URLs,
  named entities and proper nouns, and named languages (``in French``).
* **Polarity must agree**: the count of negations (``not``, ``never``, ``without``,
  ``can't``...), and each antonym axis (``before``/``after``, ``increase``/``decrease``,
  ``import``/``export``, ``ascending``/``descending``...).
* **Roles must not swap** (balanced and strict): two words that trade places around a
  word both texts keep between them (``Boston to Denver`` / ``Denver to Boston``,
  ``rename a to b`` / ``rename b to a``, ``Alice owes Bob`` / ``Bob owes Alice``).
* **What differs must be harmless** (balanced and strict): where two texts share most of
  their content words (a template around a short input, a long RAG context), every word
  that differs must be a filler or a listed synonym. Two heavily reworded texts, as true
  paraphrases usually are, are judged by the rules above only.
* **The text's own language must agree** (a question in French wants a French answer).

Strictness: ``lenient`` checks protected details, polarity and language; ``balanced``
(the default) adds roles and the differing-span rule; ``strict`` refuses any difference
in content words at all (a reworded filler is still fine).

The verifier errs towards refusing: a refused paraphrase costs one LLM call, a served
near-miss is a wrong answer.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Strictness = Literal["lenient", "balanced", "strict"]
STRICTNESS: tuple[str, ...] = ("lenient", "balanced", "strict")


@dataclass(frozen=True)
class Verification:
    """The verifier's answer: ``ok``, and when not, which rule refused (``reason``)."""

    ok: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.ok


AGREE = Verification(True)

# -- lexicons ---------------------------------------------------------------------------
_NUMBER_WORDS: dict[str, float | str] = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 1_000_000, "billion": 1_000_000_000, "dozen": 12, "half": 0.5,
    "quarter": 0.25, "couple": 2, "twice": 2, "thrice": 3,
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5",
    "sixth": "6", "seventh": "7", "eighth": "8", "ninth": "9", "tenth": "10",
}  # fmt: skip
_MONTHS = {
    "jan": "january", "feb": "february", "mar": "march", "apr": "april", "jun": "june",
    "jul": "july", "aug": "august", "sep": "september", "sept": "september",
    "oct": "october", "nov": "november", "dec": "december",
}  # fmt: skip
_MONTH_NAMES = set(_MONTHS.values()) | {"may"}
_WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
_WEEKDAY_ABBR = {
    "mon": "monday", "tue": "tuesday", "tues": "tuesday", "wed": "wednesday",
    "thu": "thursday", "thur": "thursday", "thurs": "thursday", "fri": "friday",
    "sat": "saturday", "sun": "sunday",
}  # fmt: skip
_TIME_WORDS = {
    "today", "tomorrow", "yesterday", "tonight", "morning", "afternoon", "evening",
    "noon", "midnight", "weekend", "overnight",
}  # fmt: skip
# Abbreviations app users type, read as the word they stand for.
_ABBREVIATIONS = {
    "st": "street", "rd": "road", "ave": "avenue", "blvd": "boulevard", "apt": "apartment",
    "appt": "appointment", "approx": "approximately", "acct": "account", "pls": "please",
    "plz": "please", "thx": "thanks", "msg": "message", "info": "information",
    "u": "you", "ur": "your", "r": "are", "w/": "with", "b4": "before", "asap": "soon",
    "qty": "quantity", "amt": "amount", "pkg": "package", "dept": "department",
    "tmrw": "tomorrow", "tmr": "tomorrow", "tmrrw": "tomorrow", "tonite": "tonight",
    "mins": "minute", "hrs": "hour", "secs": "second", "chars": "character",
    "char": "character",
}  # fmt: skip
# Names of one language (a programming language, a dialect of SQL) written two ways.
_LANGUAGE_ALIASES = {
    "js": "javascript", "ts": "typescript", "py": "python", "postgres": "postgresql",
    "psql": "postgresql", "farsi": "persian",
}  # fmt: skip
_TIME_UNITS = {"day", "week", "month", "year", "quarter", "weekend", "hour", "decade"}
_RELATIVE = {"next", "last", "this", "past", "coming", "previous", "following"}
_UNITS = {
    "km": "km", "kilometer": "km", "kilometre": "km", "kms": "km", "mi": "mile",
    "mile": "mile", "m": "m", "meter": "m", "metre": "m", "cm": "cm", "centimeter": "cm",
    "mm": "mm", "millimeter": "mm", "ft": "ft", "foot": "ft", "feet": "ft", "inch": "in",
    "inches": "in", "yd": "yd", "yard": "yd", "kg": "kg", "kilo": "kg", "kilogram": "kg",
    "g": "g", "gram": "g", "mg": "mg", "milligram": "mg", "lb": "lb", "lbs": "lb",
    "pound": "lb", "oz": "oz", "ounce": "oz", "l": "l", "liter": "l", "litre": "l",
    "ml": "ml", "milliliter": "ml", "gallon": "gal", "gal": "gal", "cup": "cup",
    "tbsp": "tbsp", "tablespoon": "tbsp", "tsp": "tsp", "teaspoon": "tsp",
    "celsius": "c", "fahrenheit": "f", "kelvin": "k", "mph": "mph", "kph": "kmh",
    "kmh": "kmh", "kb": "kb", "mb": "mb", "gb": "gb", "tb": "tb", "kw": "kw",
    "kwh": "kwh", "w": "w", "watt": "w", "v": "v", "volt": "v", "hz": "hz",
    "ms": "ms", "sec": "s", "second": "s", "min": "min", "minute": "min", "hr": "h",
    "hour": "h", "percent": "%", "pct": "%", "usd": "usd", "dollar": "usd", "eur": "eur",
    "euro": "eur", "gbp": "gbp", "sterling": "gbp", "yen": "jpy", "jpy": "jpy",
    "cad": "cad", "aud": "aud", "chf": "chf", "inr": "inr", "rupee": "inr", "cny": "cny",
    "yuan": "cny", "mxn": "mxn", "peso": "mxn", "btc": "btc", "bitcoin": "btc",
}  # fmt: skip
_CURRENCY_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy", "₹": "inr", "%": "%"}
_LANGUAGES = {
    "english", "french", "spanish", "german", "italian", "portuguese", "dutch",
    "chinese", "mandarin", "cantonese", "japanese", "korean", "russian", "arabic",
    "hindi", "turkish", "polish", "swedish", "norwegian", "danish", "finnish", "greek",
    "hebrew", "thai", "vietnamese", "indonesian", "ukrainian", "czech", "romanian",
    "hungarian", "persian", "farsi", "bengali", "urdu", "tamil", "swahili", "latin",
    "python", "javascript", "typescript", "java", "rust", "ruby", "php", "kotlin",
    "scala", "golang", "perl", "haskell", "sql", "postgresql", "postgres", "mysql",
    "sqlite", "bash", "powershell", "html", "css", "json", "yaml", "xml", "csv",
    "markdown", "c++", "c#",
}  # fmt: skip
_NEGATIONS = {
    "not", "no", "never", "none", "nobody", "nothing", "nowhere", "neither", "nor",
    "without", "cannot", "unable", "except", "excluding", "lack", "lacks", "non", "fail",
    "fails", "failed", "refuse", "cant", "dont", "doesnt", "didnt", "isnt", "arent",
    "wasnt", "werent", "wont", "wouldnt", "shouldnt", "couldnt", "hasnt", "havent", "hadnt",
}  # fmt: skip
# Antonym axes: a word's axis and side. Synonyms share a side, so a paraphrase that says
# "raise" for "increase" keeps the same feature.
_AXES: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = tuple(
    (name, frozenset(a.split()), frozenset(b.split()))
    for name, a, b in (
        (
            "time",
            "before prior earlier previous preceding pre ago",
            "after later following post",
        ),
        (
            "amount",
            "increase raise more higher larger bigger greater maximum max most highest "
            "largest biggest longest maximize grow gain exceed above ascending asc "
            "upgrade top",
            "decrease reduce lower less fewer smaller minimum min least lowest smallest "
            "shortest minimize shrink lose below descending desc downgrade bottom",
        ),
        (
            "switch",
            "enable activate open allow approve include add install "
            "subscribe connect login lock unmute turn_on join",
            "disable deactivate close deny block reject decline exclude remove delete "
            "uninstall unsubscribe disconnect logout unlock hide mute turn_off leave",
        ),
        (
            "flow_io",
            "import upload send push incoming inbound input receive_side",
            "export download receive pull outgoing outbound output",
        ),
        ("trade", "buy purchase borrow lend_in deposit credit", "sell lend withdraw debit"),
        (
            "code",
            "encrypt encode compress serialize zip",
            "decrypt decode decompress deserialize unzip",
        ),
        ("outcome", "win pass succeed success", "lose fail failure"),
        ("travel", "arrive arrival arriving", "depart departure departing leave"),
        ("compass", "north east", "south west"),
        ("side", "left", "right"),
        ("rank", "first best oldest earliest", "last worst newest latest"),
        ("truth", "true yes valid correct", "false invalid incorrect wrong"),
        (
            "sex",
            "male man men boy boys husband father son",
            "female woman women girl girls wife mother daughter",
        ),
        ("temp", "hot warm heat", "cold cool"),
        (
            "sign",
            "positive plus pros advantage advantages benefit benefits",
            "negative minus cons disadvantage disadvantages drawback drawbacks risk risks",
        ),
        ("price", "cheap cheapest inexpensive affordable", "expensive priciest costly"),
        ("speed", "fast faster fastest quick quickly", "slow slower slowest"),
        ("ease", "easy easier easiest simple", "hard harder hardest difficult"),
        ("access", "public", "private"),
        ("place", "internal inside inner indoor", "external outside outer outdoor"),
        (
            "role",
            "client frontend parent sender buyer employer landlord",
            "server backend child recipient seller employee tenant",
        ),
        ("math", "add sum multiply", "subtract difference divide"),
        ("age", "old older", "new newer young younger"),
        ("when", "early", "late"),
        ("sets", "union", "intersection"),
        ("parity", "even", "odd"),
        (
            "quality",
            "good great excellent nice love loved amazing awesome",
            "bad terrible awful poor hate hated horrible",
        ),
        ("rw", "read load", "write save"),
        (
            "effect",
            "help helps benefit benefits improve improves",
            "hurt hurts harm harms damage damages worsen worsens",
        ),
        ("stance", "for pro favor favour support supports", "against anti oppose opposes"),
        ("motion", "to into towards toward", "from"),
        ("legal", "legal", "illegal"),
        ("safe", "safe", "dangerous unsafe"),
    )
)
_AXIS_OF: dict[str, tuple[str, int]] = {}
for _name, _a, _b in _AXES:
    for _w in _a:
        _AXIS_OF.setdefault(_w, (_name, 0))
    for _w in _b:
        _AXIS_OF.setdefault(_w, (_name, 1))

# Words that carry no content of their own: their differences never refuse a candidate.
_STOPWORDS = (
    frozenset(
        [
            "much",
            "many",
            "a",
            "an",
            "the",
            "and",
            "or",
            "but",
            "if",
            "then",
            "so",
            "of",
            "to",
            "in",
            "on",
            "at",
            "for",
            "from",
            "by",
            "with",
            "about",
            "as",
            "into",
            "onto",
            "upon",
            "is",
            "are",
            "was",
            "were",
            "be",
            "been",
            "being",
            "am",
            "do",
            "does",
            "did",
            "doing",
            "done",
            "have",
            "has",
            "had",
            "having",
            "i",
            "me",
            "my",
            "mine",
            "we",
            "us",
            "our",
            "you",
            "your",
            "yours",
            "he",
            "him",
            "his",
            "she",
            "her",
            "it",
            "its",
            "they",
            "them",
            "their",
            "this",
            "that",
            "these",
            "those",
            "there",
            "here",
            "what",
            "which",
            "who",
            "whom",
            "whose",
            "when",
            "where",
            "why",
            "how",
            "can",
            "could",
            "should",
            "would",
            "will",
            "shall",
            "may",
            "might",
            "must",
            "need",
            "needs",
            "want",
            "wants",
            "wanted",
            "like",
            "please",
            "kindly",
            "just",
            "really",
            "actually",
            "quickly",
            "simply",
            "exactly",
            "basically",
            "pretty",
            "very",
            "quite",
            "some",
            "any",
            "all",
            "each",
            "every",
            "also",
            "too",
            "even",
            "still",
            "yet",
            "already",
            "again",
            "ever",
            "tell",
            "show",
            "give",
            "explain",
            "describe",
            "let",
            "know",
            "help",
            "get",
            "got",
            "make",
            "way",
            "ways",
            "best",
            "good",
            "possible",
            "hey",
            "hi",
            "hello",
            "thanks",
            "thank",
            "okay",
            "ok",
            "sure",
            "im",
            "ive",
            "id",
            "youre",
            "dont",
            "whats",
            "hows",
            "one",
            "ones",
            "thing",
            "things",
            "something",
            "anything",
            "stuff",
            "question",
            "answer",
            "step",
            "steps",
            "correct",
            "correctly",
            "properly",
            "right",
            "proper",
        ]
    )
    - _NEGATIONS
)
# Rewordings that mean the same in app traffic: a differing word and its listed
# synonym count as the same word.
_SYNONYM_SETS = (
    "delete remove erase",
    "buy purchase order",
    "cancel terminate end",
    "fix repair resolve solve",
    "start begin",
    "finish complete",
    "change modify update edit alter",
    "create make build generate",
    "use utilize",
    "find locate search",
    "reset reinstate",
    "phone telephone mobile cell",
    "email mail e-mail",
    "car automobile vehicle",
    "movie film",
    "big large",
    "small little tiny",
    "error bug issue problem",
    "shop store",
    "price cost",
    "return refund",
    "package parcel",
    "ship deliver send",
    "shipping delivery",
    "account profile",
    "password passcode",
    "login signin",
    "signup register registration",
    "job work",
    "doctor physician",
    "kid child",
    "kids children",
    "photo picture image",
    "app application",
    "fast quick",
    "choose pick select",
    "check verify",
    "mean meaning definition define",
    "difference differ",
    "list enumerate",
    "explain explanation",
    "write draft compose",
    "sum total",
    "convert conversion",
)
_SYNONYM: dict[str, str] = {}
for _line in _SYNONYM_SETS:
    _words = _line.split()
    for _w in _words:
        _SYNONYM.setdefault(_w, _words[0])

# fmt: off
_LANG_STOPWORDS = {
    "en": frozenset({
        "the", "and", "is", "are", "of", "to", "in", "what", "how", "why", "who", "which",
        "you", "your", "with", "for", "this", "it", "can", "do", "does", "my",
    }),
    "fr": frozenset({
        "le", "la", "les", "des", "est", "et", "une", "un", "pour", "que", "qui", "dans",
        "avec", "vous", "pas", "sur", "quel", "quelle", "il", "à", "du", "au", "ce", "ne",
    }),
    "es": frozenset({
        "el", "los", "las", "es", "y", "una", "un", "para", "que", "en", "con", "por",
        "esta", "qué", "cómo",
        "como", "del", "cual", "donde",
    }),
    "de": frozenset({
        "der", "die", "das", "und", "ist", "ein", "eine", "nicht", "mit", "für", "wie",
        "was", "ich", "sie", "den", "dem",
    }),
    "it": frozenset({
        "il", "lo", "gli", "della", "che", "è", "una", "per", "non", "con", "come",
        "sono", "del", "quale", "dove",
    }),
    "pt": frozenset({
        "o", "os", "as", "é", "um", "uma", "para", "que", "não", "com", "como", "do",
        "da", "dos", "onde", "qual",
    }),
    "nl": frozenset({
        "de", "het", "een", "en", "is", "van", "niet", "met", "voor", "hoe", "wat", "ik",
        "je", "zijn", "waar",
    }),
}
# fmt: on

_CANNOT = re.compile(r"\b(can)not\b", re.I)
_CONTRACTIONS = (
    (re.compile(r"\b(can)['’]t\b", re.I), r"\1 not"),
    (re.compile(r"\bwon['’]t\b", re.I), "will not"),
    (re.compile(r"\bshan['’]t\b", re.I), "shall not"),
    (re.compile(r"n['’]t\b", re.I), " not"),
    (_CANNOT, r"\1 not"),
    (re.compile(r"['’](re|ve|ll|d|m)\b", re.I), ""),
    (re.compile(r"\b(it|that|what|there|here|who|how|where|when|he|she|let)['’]s\b", re.I), r"\1"),
    (re.compile(r"['’]s\b"), ""),  # possessive
)

# "How many days does delivery take?" asks what "How long does shipping take?" asks.
_HOW_LONG = re.compile(
    r"\bhow (?:many (?:days|weeks|hours|minutes|months|years)|much time)\b", re.I
)
_QUOTED = re.compile(
    r"\"([^\"\n]{1,300})\"|“([^”\n]{1,300})”|‘([^’\n]{1,300})’|`([^`\n]{1,300})`"
    r"|(?:(?<=\s)|^)'([^'\n]{1,300})'(?=[\s.,;:!?)]|$)"
)
_TOKEN = re.compile(
    r"(?P<url>(?:https?://|www\.)\S+[^\s.,;:!?)])"
    r"|(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|(?P<date>\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4})"
    r"|(?P<time>\d{1,2}:\d{2}(?::\d{2})?(?:\s?[ap]\.?m\.?)?(?![\w])|\d{1,2}\s?[ap]\.?m\.?(?![\w]))"
    r"|(?P<num>(?:[$€£¥₹]\s?)?\d+(?:[,\s]\d{3})*(?:\.\d+)?(?:st|nd|rd|th)?%?(?![\w.]*[A-Za-z_]))"
    r"|(?P<ident>[A-Za-z_][\w]*(?:(?:\.|::|->|/)[A-Za-z_][\w]*)+(?:\(\))?"
    r"|[A-Za-z_]+_[\w]*|[a-z]+[A-Z][\w]*|[A-Za-z]*\d[\w\-]*|\w+\(\))"
    r"|(?P<word>[^\W\d_]+(?:[\-'’][^\W\d_]+)*)"
    r"|(?P<sym>[$€£¥₹%#@&+=<>()\[\]])"
)
_SENTENCE_END = re.compile(r"[.!?:;\n]\s*$")


def _norm_number(text: str) -> str:
    raw = text.replace(" ", "")
    sym = raw[0] if raw and raw[0] in "$€£¥₹" else ""
    body = raw[1:] if sym else raw
    pct = body.endswith("%")
    body = body.rstrip("%")
    suffix = ""
    m = re.match(r"^(.*?)(st|nd|rd|th)$", body)
    if m:
        body, suffix = m.group(1), m.group(2)
    body = body.replace(",", "")
    if re.fullmatch(r"\d+\.\d*?0+", body):
        body = body.rstrip("0").rstrip(".")
    if suffix:
        return body.lstrip("0")  # "May 3rd" is "May 3" (and "third" is 3)
    if body.isdigit() and len(body) > 1 and body.startswith("0"):
        pass  # "0142": digits of a phone number or an id keep their zeros
    return body + ("%" if pct else "")


def _norm_time(text: str) -> str:
    """``3pm``, ``3 p.m.`` and ``15:00`` are the same time."""
    t = re.sub(r"[\s.]", "", text.casefold())
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?(?::\d{2})?(am|pm)?", t)
    if not m:
        return t
    hour, minute, half = int(m.group(1)), m.group(2) or "00", m.group(3)
    if half == "pm" and hour < 12:
        hour += 12
    if half == "am" and hour == 12:
        hour = 0
    return f"{hour:02d}:{minute}"


def _stem_word(word: str) -> str:
    """A light English stemmer: enough to make "cancel", "cancels", "canceling" meet."""
    w = word
    for suffix in ("ations", "ation", "ings", "ing", "edly", "ied", "ies", "ed", "es", "s"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            if suffix in ("ied", "ies"):
                return w[: -len(suffix)] + "y"
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]  # "cancell" -> "cancel", "stopp" -> "stop"
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w


# A pure function of one word, asked for every word of every question compared: kept.
_stem = functools.lru_cache(maxsize=1 << 16)(_stem_word)


@dataclass(frozen=True)
class _Features:
    text: str
    protected: Counter[str]
    entities: frozenset[str]
    words: frozenset[str]  # casefolded, stemmed: every word the text has
    negations: int
    axes: Counter[tuple[str, int]]
    content: tuple[str, ...]  # content words in order (casefolded, stemmed, synonyms mapped)
    sequence: tuple[str, ...]  # protected details, content words and negations, in order
    raw: tuple[str, ...]  # every word, in order
    person: frozenset[int]  # 1: the text speaks as "I"/"we", 2: it addresses "you"
    roles: tuple[frozenset[int], frozenset[int]]  # the persons that act, the persons acted on
    language: str | None
    script: str | None

    # Counted when a comparison first needs them, then kept with the parts (a stored
    # question's parts are compared again at every lookup it is a candidate of).
    @functools.cached_property
    def sequence_counts(self) -> Counter[str]:
        return Counter(self.sequence)

    @functools.cached_property
    def raw_counts(self) -> Counter[str]:
        return Counter(self.raw)


# Who a text speaks as, or to: "You're an idiot if you think this works" insults the
# reader, "I'd be an idiot to think this works" is self-deprecation.
_PERSON: dict[str, int] = {
    **dict.fromkeys(("i", "me", "my", "mine", "myself", "we", "our", "ours", "ourselves"), 1),
    **dict.fromkeys(("you", "your", "yours", "yourself", "yourselves", "u", "ur"), 2),
}

# "can you check", "do you offer", "do you need to rinse": a request to the assistant, or
# the generic "you", which an "I" rewording keeps the meaning of.
_ASKING = {
    "can", "could", "would", "will", "do", "does", "did", "should", "shall", "may", "might",
    "are", "have", "please", "pls",
}  # fmt: skip


def _persons(words: list[str]) -> frozenset[int]:
    found: set[int] = set()
    prev = ""
    for word in words:
        low = word.casefold()
        person = _PERSON.get(low)
        if person is not None and not (person == 2 and prev in _ASKING):
            found.add(person)
        prev = low
    return frozenset(found)


# Where "you" is the one who acts: after an auxiliary ("should you tell"), at the start of
# a clause ("if you send"), or before a verb form ("you should", "you are").
_CLAUSE_START = _ASKING | {
    "", "if", "when", "that", "what", "how", "why", "where", "who", "which", "and", "but",
    "or", "so", "because", "unless", "whether", "then", "once", "while", "until", "is",
    "was", "were", "am", "cannot",
}  # fmt: skip
_ACTS_NEXT = _ASKING | {
    "is", "was", "were", "am", "not", "need", "want", "know", "think", "cannot", "must",
    "ever", "also", "just", "really", "always", "never", "still",
}  # fmt: skip
_SUBJECT_1 = {"i", "we"}
_OBJECT_1 = {"me", "us"}


def _roles(words: list[str]) -> tuple[frozenset[int], frozenset[int]]:
    """Who acts and who is acted on: "Should I tell you ..." has 1 acting on 2, "Should
    you tell me ..." 2 on 1. Possessives ("my", "your") are neither."""
    acting: set[int] = set()
    acted_on: set[int] = set()
    for i, word in enumerate(words):
        if word == "by" and i + 1 < len(words) and words[i + 1] in ("me", "us", "you", "u"):
            return frozenset(), frozenset()  # "blocked by you": the passive, not compared
        if word in _SUBJECT_1:
            acting.add(1)
        elif word in _OBJECT_1:
            acted_on.add(1)
        elif word in ("you", "u"):
            prev = words[i - 1] if i else ""
            nxt = words[i + 1] if i + 1 < len(words) else ""
            (acting if prev in _CLAUSE_START or nxt in _ACTS_NEXT else acted_on).add(2)
    return frozenset(acting), frozenset(acted_on)


# Function words that carry a relation: items that trade places around one swap roles.
_PIVOTS = {"to", "from", "into", "than", "vs", "versus", "over", "under", "by", "for"}


@functools.lru_cache(maxsize=4096)
def _script_of(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ")[0] if name else "?"


def _script(text: str) -> str | None:
    if text.isascii():  # every ASCII letter is a LATIN one
        return "LATIN" if any(ch.isalpha() for ch in text) else None
    counts: Counter[str] = Counter()
    for ch in text:
        if ch.isalpha():
            counts[_script_of(ch)] += 1
    if not counts:
        return None
    return counts.most_common(1)[0][0]


# Each stopword's languages, in `_LANG_STOPWORDS` order (so ties break as before).
_LANGS_OF: dict[str, tuple[str, ...]] = {}
for _lang, _stop in _LANG_STOPWORDS.items():
    for _word in _stop:
        _LANGS_OF[_word] = (*_LANGS_OF.get(_word, ()), _lang)


def _language(words: Iterable[str]) -> str | None:
    hits = Counter[str]()
    for w in words:
        for lang in _LANGS_OF.get(w, ()):
            hits[lang] += 1
    if not hits:
        return None
    (best, n), *rest = [*hits.most_common(2), ("", 0)]
    second = rest[0][1] if rest else 0
    return best if n >= 2 and n >= 2 * second else None


_ARROW = re.compile(r"\s(?:->|=>|→)\s")
# "= ?", "= how many": an equals sign that asks, not a formula.
_ASKING_EQUALS = re.compile(r"\s=\s*(?=\?|how\b|what\b|which\b)", re.I)
_DEGREES = re.compile(r"\s?°\s?([CFK])\b")
_DEGREE_NAMES = {"C": " celsius", "F": " fahrenheit", "K": " kelvin"}
_MATH = re.compile(r"[+*/=^<>]|\w\(|\b(?:plus|minus|times|divided|multiplied)\b", re.I)
_ADVERB_END = re.compile(r"\s*(?:[.,;!?)]|$|and\b|then\b|before\b)", re.I)
_NEXT_WORD = re.compile(r"\s+([^\W\d_]+)")
# "2-year", "58-year-old": a number and the words it qualifies ("two-year" is read the
# same way below).
_NUMBER_HYPHEN = re.compile(r"(?<![\w.\-])(\d+(?:\.\d+)?)-(?=[^\W\d_]{2,})")
_WORD_NUMBER_HYPHEN = re.compile(
    r"\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|"
    r"thirty|forty|fifty|sixty|hundred)-(?=[^\W\d_]{3,})",
    re.I,
)
# "one tablet", "a month": the number 1 before a unit or a counted thing, unless it is a
# rate ("once a day", "twice a week", "per").
_ONE_BEFORE = re.compile(
    r"(?<!once )(?<!twice )(?<!times )(?<!per )\b(?:one|a|an)\s+(?=(?:minute|hour|day|"
    r"week|month|year|tablet|pill|cup|mile|kilometre|kilometer|meter|metre|night)s?\b)",
    re.I,
)


def _split_word_number(m: re.Match[str]) -> str:
    rest = m.string[m.end() :].split("-", 1)[0].split()[0].casefold()
    return m.group() if rest in _NUMBER_WORDS else m.group(1) + " "


def _expand(text: str) -> str:
    # (Each rewrite is skipped where the character it needs is absent: most questions
    # have no arrow, equals sign, degree sign or hyphen.)
    text = _HOW_LONG.sub("how long", text)
    if ">" in text or "→" in text:
        text = _ARROW.sub(" to ", text)
    if "=" in text:
        text = _ASKING_EQUALS.sub(" is ", text)
    if "°" in text:
        text = _DEGREES.sub(lambda m: _DEGREE_NAMES[m.group(1)], text)
    if "-" in text:
        text = _NUMBER_HYPHEN.sub(r"\1 ", text)
        text = _WORD_NUMBER_HYPHEN.sub(_split_word_number, text)
    text = _ONE_BEFORE.sub("1 ", text)
    if "'" in text or "’" in text:
        for pattern, repl in _CONTRACTIONS:
            text = pattern.sub(repl, text)
    else:  # every other contraction has an apostrophe
        text = _CANNOT.sub(r"\1 not", text)
    return text


def features(text: str) -> _Features:
    """The parts of a text the rules compare (exposed for tests and custom verifiers)."""
    text = unicodedata.normalize("NFKC", text)
    protected: Counter[str] = Counter()
    for m in _QUOTED.finditer(text):
        quoted = next(g for g in m.groups() if g is not None)
        protected["quote:" + " ".join(quoted.casefold().split())] += 1
    expanded = _expand(text)
    entities: set[str] = set()
    words: set[str] = set()
    negations = 0
    axes: Counter[tuple[str, int]] = Counter()
    content: list[str] = []
    sequence: list[str] = []
    raw_words: list[str] = []
    prev_word = ""
    sentence_start = True
    for m in _TOKEN.finditer(expanded):
        kind = m.lastgroup
        tok = m.group()
        if kind == "word":
            w = _word_facts(tok)
            raw_words.append(w.raw)
            low = w.low
            compound = w.compound
            number = compound is not None or (
                w.number_word
                and not (low == "second" and prev_word in ("a", "one", "per", "every"))
                and not (low == "first" and _ADVERB_END.match(expanded, m.end(), m.end() + 24))
            )
            if (
                low == "one"
                and (nxt := _NEXT_WORD.match(expanded, m.end(), m.end() + 24))
                and (nxt.group(1).casefold() not in _STOPWORDS)
            ):
                compound = 1.0  # "one tablet" (not "which one is", "one of")
                number = True
            if number:
                spelled = compound if compound is not None else _NUMBER_WORDS[low]
                word_value = "num:" + (spelled if isinstance(spelled, str) else f"{spelled:g}")
                protected[word_value] += 1
                sequence.append(word_value)
            unit_key = w.unit
            is_unit = unit_key is not None and (
                not w.unit_needs_number or _prev_is_number(prev_word)
            )
            if unit_key is not None and is_unit:
                protected[unit_key] += 1
                sequence.append(unit_key)
            # Weekdays and times of day are in the sequence too: "from Monday to Friday"
            # and "from Friday to Monday" hold the same details in another order. (Not
            # months: "31 August" and "August 31" are one date; dates swap by number.)
            if w.month is not None:
                protected[w.month] += 1
            if w.when is not None:
                protected[w.when] += 1
                sequence.append(w.when)
            elif w.clock is not None:
                protected[w.clock] += 1
            if w.relative and prev_word in _RELATIVE:
                protected[f"when:{prev_word}_{w.base}"] += 1
            if w.lang is not None:
                protected[w.lang] += 1
                sequence.append(w.lang)
            if w.negation and not (
                low == "no" and re.match(r"\.?\s*#?\d", expanded[m.end() : m.end() + 4])
            ):
                negations += 1
                sequence.append("not")
            if w.axis is not None:
                axes[w.axis] += 1
            is_proper = w.capital and (not sentence_start or w.proper)
            # A unit, like a date or a language, is compared as a protected detail, not as
            # a word ("ounces" is "oz", "GBP" is "£").
            calendar = w.calendar or is_unit
            if is_proper and not calendar and w.entity:
                entities.add(w.stem)
            words.add(w.stem)
            words.add(low)
            if not number and not calendar and w.content:
                content.append(w.mapped)
                sequence.append(w.mapped)
            elif w.pivot:
                sequence.append(low)
            prev_word = low
            sentence_start = False
            end = m.end()
            if _SENTENCE_END.search(expanded, end, end + 2):
                sentence_start = True
            continue
        if kind == "url" or kind == "email":
            protected[f"{kind}:{tok.casefold()}"] += 1
            sequence.append(f"{kind}:{tok.casefold()}")
        elif kind == "date":
            value = "date:" + re.sub(r"[.\-]", "/", tok)
            protected[value] += 1
            sequence.append(value)
        elif kind == "time":
            value = "time:" + _norm_time(tok)
            protected[value] += 1
            sequence.append(value)
        elif kind == "num":
            value = "num:" + _norm_number(tok)
            protected[value] += 1
            if tok[0] in _CURRENCY_SYMBOLS:
                protected["unit:" + _CURRENCY_SYMBOLS[tok[0]]] += 1
            sequence.append(value)
        elif kind == "ident" and re.fullmatch(r"\d+x", tok):
            protected["num:" + tok[:-1]] += 1  # "2x" is "twice"
            sequence.append("num:" + tok[:-1])
        elif kind == "ident" and (unit := _number_with_unit(tok)) is not None:
            protected["num:" + unit[0]] += 1  # "500mg" is "500 mg"
            protected["unit:" + unit[1]] += 1
            sequence.append("num:" + unit[0])
        elif kind == "ident":
            protected["ident:" + tok] += 1
            sequence.append("ident:" + tok)
        elif kind == "sym":
            if tok in _CURRENCY_SYMBOLS:
                protected["unit:" + _CURRENCY_SYMBOLS[tok]] += 1
            elif tok in "<>+=&" or (tok in "()[]" and _MATH.search(text)):
                # Brackets matter in a formula or code ("(2+3)*4"); in prose they are
                # punctuation ("(415) 555-0192", "(python)").
                protected["sym:" + tok] += 1
        prev_word = tok.casefold()
        sentence_start = False
    for key in protected:
        if key.startswith("unit:"):
            protected[key] = 1  # "£18.40 (GBP)" names one currency twice
    return _Features(
        text=text,
        protected=protected,
        entities=frozenset(entities),
        words=frozenset(words),
        negations=negations,
        axes=axes,
        content=tuple(content),
        sequence=tuple(sequence),
        raw=tuple(raw_words),
        person=_persons(raw_words),
        roles=_roles(raw_words),
        language=_language(raw_words),
        script=_script(text),
    )


@dataclass(frozen=True, slots=True)
class _Word:
    """What `features` reads of one word token that does not depend on its neighbours
    (kept per token: a text's words are mostly words seen before)."""

    raw: str  # casefolded
    low: str  # accents folded, abbreviations expanded
    compound: float | None  # "twenty-five"
    number_word: bool
    unit: str | None  # "unit:..." if it names a unit
    unit_needs_number: bool  # "m", "in", "second"...: a unit only after a number
    base: str  # singular
    month: str | None  # "month:..."
    when: str | None  # "when:..." (a weekday or a time of day)
    clock: str | None  # "time:..." (noon, midnight)
    relative: bool  # "next <this>" is a date ("next week", "last Monday")
    lang: str | None  # "lang:..."
    negation: bool
    axis: tuple[str, int] | None
    capital: bool  # starts with a capital
    proper: bool  # a name even at a sentence's start ("NASA", "iPhone", "B2B")
    calendar: bool  # a month, weekday or language: compared as a detail, not a word
    entity: bool  # a name, if capitalized (not a stopword or a negation, unless shouted)
    content: bool  # a content word, unless a number or a unit
    stem: str
    mapped: str  # the stem, synonyms mapped
    pivot: bool


@functools.lru_cache(maxsize=1 << 16)
def _word_facts(tok: str) -> _Word:
    raw = tok.casefold().replace("’", "'")
    folded = _fold_accents(raw)
    low = _ABBREVIATIONS.get(folded, folded)
    base = low if low in _UNITS else (low[:-1] if low.endswith("s") else low)
    month = None
    if low in _MONTHS or (low in _MONTH_NAMES and (low != "may" or tok == "May")):
        month = "month:" + _MONTHS.get(low, low)
    when = clock = None
    if low in _WEEKDAYS or (low in _TIME_WORDS and low not in ("noon", "midnight")):
        when = "when:" + low
    elif low in _WEEKDAY_ABBR and tok[0].isupper():
        when = "when:" + _WEEKDAY_ABBR[low]
    elif low in ("noon", "midday", "midnight"):
        clock = "time:" + ("00:00" if low == "midnight" else "12:00")
    lang = None
    if low in _LANGUAGES or low in _LANGUAGE_ALIASES:
        lang = "lang:" + _LANGUAGE_ALIASES.get(low, low)
    stem = _stem(low)
    negation = low in _NEGATIONS
    stop = low in _STOPWORDS
    shouted = tok.isupper() and len(tok) > 1  # "US" is not "us"
    calendar = low in _MONTHS or low in _MONTH_NAMES or low in _WEEKDAYS
    calendar = calendar or low in _WEEKDAY_ABBR or low in _LANGUAGES
    calendar = calendar or low in _LANGUAGE_ALIASES
    return _Word(
        raw=raw,
        low=low,
        compound=_compound_number(low),
        number_word=low in _NUMBER_WORDS,
        unit="unit:" + _UNITS[base] if base in _UNITS else None,
        unit_needs_number=low in ("m", "g", "l", "w", "v", "in", "min", "second", "s", "ms"),
        base=base,
        month=month,
        when=when,
        clock=clock,
        relative=base in _TIME_UNITS or low in _WEEKDAYS,
        lang=lang,
        negation=negation,
        axis=_AXIS_OF.get(low) or _AXIS_OF.get(stem),
        capital=tok[0].isupper(),
        proper=shouted or _inner_capital(tok),
        calendar=calendar,
        entity=(shouted or not stop) and not negation,
        content=not stop and not negation,
        stem=stem,
        mapped=_SYNONYM.get(low) or _SYNONYM.get(stem) or stem,
        pivot=low in _PIVOTS,
    )


# A stored question is compared again at every lookup it is a candidate of: its parts are
# kept (a pure function of the text; the parts are never changed in place).
_features = functools.lru_cache(maxsize=4096)(features)


def _compound_number(word: str) -> float | None:
    """``twenty-five`` is 25."""
    if "-" not in word:
        return None
    parts = word.split("-")
    if not all(p in _NUMBER_WORDS and isinstance(_NUMBER_WORDS[p], int) for p in parts):
        return None
    return float(sum(float(_NUMBER_WORDS[p]) for p in parts))


def _number_with_unit(tok: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]+)", tok)
    if m is None:
        return None
    unit = m.group(2).casefold()
    base = unit if unit in _UNITS else unit.rstrip("s")
    if base not in _UNITS:
        return None
    return _norm_number(m.group(1)), _UNITS[base]


def _fold_accents(word: str) -> str:
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def _quotes_said(only: Counter[str], other: str) -> Counter[str]:
    """``only`` without the quoted strings that ``other`` says without quotes ("Translate:
    See you next week." and "translate 'See you next week'")."""
    plain = f" {_plain(other)} "
    return Counter(
        {
            k: n
            for k, n in only.items()
            if not (k.startswith("quote:") and f" {_plain(k[6:])} " in plain)
        }
    )


def _prev_is_number(prev: str) -> bool:
    return bool(prev) and (prev[0].isdigit() or prev in _NUMBER_WORDS)


def _inner_capital(tok: str) -> bool:
    return any(c.isupper() for c in tok[1:]) or any(c.isdigit() for c in tok)


def _flipped(a: Counter[tuple[str, int]], b: Counter[tuple[str, int]]) -> bool:
    """Did one text trade a word of an antonym axis for its opposite ("before" for
    "after")? Mentioning an axis on one side only is not a flip."""
    if not a or not b:
        return False  # a flip needs the axis on both sides
    for name in {axis for axis, _ in a} | {axis for axis, _ in b}:
        d0 = a[(name, 0)] - b[(name, 0)]
        d1 = a[(name, 1)] - b[(name, 1)]
        if d0 * d1 < 0:
            return True
    return False


def _overlap(a: Counter[str], b: Counter[str]) -> int:
    """``sum((a & b).values())`` for counts that are all positive, without the
    intermediate Counter (the comparison runs on every semantic candidate)."""
    if len(a) > len(b):
        a, b = b, a
    get = b.get
    return sum(n if n <= m else m for w, n in a.items() if (m := get(w, 0)))


def _reordered(a: _Features, b: _Features) -> bool:
    """Do two texts say the same things in another order? In app traffic that is a swap
    of roles or direction ("Boston to Denver", "from June 12 to June 14", "transfer my
    subscription to my husband's account")."""
    sa, sb = a.sequence, b.sequence
    ca, cb = a.sequence_counts, b.sequence_counts
    kept_a = [w for w in sa if w in cb]
    kept_b = [w for w in sb if w in ca]
    if _one_block_moved(kept_a, kept_b):
        return False  # a clause moved as a whole ("from June 12, three nights")
    same_words = _overlap(a.raw_counts, b.raw_counts) / max(len(a.raw), len(b.raw), 1) >= 0.85
    if same_words and kept_a != kept_b:
        return True  # nearly the same words, and what they share stands in another order
    if _overlap(ca, cb) / max(len(sa), len(sb), 1) < 0.6:
        return False  # reworded: word order says little
    # Two items trade places around a third that stays between them ("A owes B"): the
    # positions in ``b`` of the words each text has once, in ``a``'s order.
    pos_b = {w: i for i, w in enumerate(sb) if cb[w] == 1}
    at = [pos_b[w] for w in sa if ca[w] == 1 and cb.get(w) == 1][:60]
    for i, x in enumerate(at):
        for k in range(i + 2, len(at)):
            y = at[k]
            if y > x:
                continue
            if any(y < p < x for p in at[i + 1 : k]):
                return True
    return False


def _one_block_moved(a: list[str], b: list[str]) -> bool:
    """Is ``b`` ``a`` with one run of items cut and pasted elsewhere ("translate into
    Korean: see you" / "translate 'see you' into Korean")? Two items that trade places
    around a third ("Boston to Denver" / "Denver to Boston") take two moves, not one.
    Both runs must hold two items or more (one word moved across a clause is a role
    swap: "transfer my subscription to my husband's account" / "my husband's
    subscription to my account"), and a negation never moves ("don't cancel, just
    change" / "cancel, don't change")."""
    n = len(a)
    if a == b or n != len(b) or n > 40 or sorted(a) != sorted(b):
        return False
    start = next(i for i in range(n) if a[i] != b[i])
    end = next(i for i in range(n - 1, -1, -1) if a[i] != b[i]) + 1
    x, y = a[start:end], b[start:end]
    for cut in range(1, len(x)):
        if x[cut:] + x[:cut] == y and min(cut, len(x) - cut) >= 2 and "not" not in x:
            return True
    return False


def _typo(x: str, y: str) -> bool:
    """One word written two ways ("pasword", "disapointed", "réserver")."""
    return (
        min(len(x), len(y)) >= 4
        and x[0] == y[0]
        and difflib.SequenceMatcher(None, x, y, autojunk=False).ratio() >= 0.8
    )


def _trim(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Drop the common prefix and suffix (a template, a shared context)."""
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end = 0
    while end < len(a) - start and end < len(b) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    return a[start : len(a) - end], b[start : len(b) - end]


def _shared_ratio(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _differing(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The content words only one side has (a moved word or a typo is not one)."""
    ta, tb = _trim(a, b)
    if not ta and not tb:
        return [], []
    ca, cb = Counter(ta), Counter(tb)
    # ``(ca - (ca & cb)).elements()``: each side's surplus, in first-seen order.
    only_a = [w for w, n in ca.items() for _ in range(n - cb.get(w, 0))]
    only_b = [w for w, n in cb.items() for _ in range(n - ca.get(w, 0))]
    for x in list(only_a):
        match = next((y for y in only_b if _typo(x, y)), None)
        if match is not None:
            only_a.remove(x)
            only_b.remove(match)
    return only_a, only_b


class RuleVerifier:
    """The built-in verifier: ``RuleVerifier("balanced")(query, candidate)``.

    Args:
        strictness: ``lenient``, ``balanced`` (default) or ``strict`` (see the module).

    Example:
        >>> RuleVerifier()("Flights from Boston to Denver", "Flights from Denver to Boston")
        Verification(ok=False, reason='order')
    """

    def __init__(self, strictness: Strictness = "balanced") -> None:
        if strictness not in STRICTNESS:
            raise ValueError(f"strictness must be one of {STRICTNESS}, got {strictness!r}")
        self.strictness = strictness

    def __repr__(self) -> str:
        return f"RuleVerifier({self.strictness!r})"

    def __call__(self, query: str, candidate: str) -> Verification:
        return verify(query, candidate, self.strictness)


def _same_counts(a: Counter[str], b: Counter[str]) -> bool:
    """``a == b`` for counts that are all positive: `dict`'s equality, in C (Counter's
    own is a Python loop that reads missing keys as zero)."""
    return dict.__eq__(a, b)


def _roles_swapped(
    a: tuple[frozenset[int], frozenset[int]], b: tuple[frozenset[int], frozenset[int]]
) -> bool:
    """Each text has both "I" and "you", and no one keeps a role: one acts on the other in
    one text and is acted on in the other. (A generic "you" that an "I" rewords keeps
    every role: "how do you know if a guy likes you" / "... if a guy likes me".)"""
    (acting_a, on_a), (acting_b, on_b) = a, b
    both = frozenset((1, 2))
    if acting_a | on_a != both or acting_b | on_b != both:
        return False
    return bool(acting_a and acting_b and on_a and on_b) and not (
        acting_a & acting_b or on_a & on_b
    )


def verify(query: str, candidate: str, strictness: Strictness = "balanced") -> Verification:
    """Compare two questions; refuse when they may want different answers.

    Args:
        query: the question of the request being looked up.
        candidate: the stored question of the semantic candidate.
        strictness: ``lenient``, ``balanced`` or ``strict``.

    Returns:
        `Verification`: ``ok``, or the name of the rule that refused.
    """
    if " ".join(query.split()) == " ".join(candidate.split()):
        return AGREE
    fa, fb = _features(query), _features(candidate)
    if fa.script and fb.script and fa.script != fb.script:
        return Verification(False, "script")
    if fa.language and fb.language and fa.language != fb.language:
        return Verification(False, "language")
    if not _same_counts(fa.protected, fb.protected):
        diff = _quotes_said(fa.protected - fb.protected, fb.text) + _quotes_said(
            fb.protected - fa.protected, fa.text
        )
        if diff:
            return Verification(False, next(iter(diff)).split(":", 1)[0])
    if fa.negations != fb.negations:
        return Verification(False, "negation")
    if fa.person and fb.person and not (fa.person & fb.person):
        # One speaks only as "I", the other only to "you": the person changed, not the
        # wording. (A text with both, "can you tell me how I ...", is never refused here.)
        return Verification(False, "person")
    if _roles_swapped(fa.roles, fb.roles):
        # Both speak of "I" and "you", with the roles swapped: "Should I tell you my
        # password?" / "Should you tell me your password?".
        return Verification(False, "person")
    if _flipped(fa.axes, fb.axes):
        return Verification(False, "antonym")
    for ents, other in ((fa.entities, fb.words), (fb.entities, fa.words)):
        if any(e not in other for e in ents):
            return Verification(False, "entity")
    if strictness == "lenient":
        return AGREE
    if _reordered(fa, fb):
        return Verification(False, "order")
    only_a, only_b = _differing(fa.content, fb.content)
    if strictness == "strict":
        return Verification(False, "wording") if only_a or only_b else AGREE
    if not only_a and not only_b:
        return AGREE  # the rules below weigh words one side has
    # How much content the texts share, in order: read only when a rule needs it.
    shared = -1.0
    axes_a = Counter(a for w in only_a if (a := _AXIS_OF.get(w)) is not None)
    axes_b = Counter(b for w in only_b if (b := _AXIS_OF.get(w)) is not None)
    if axes_a != axes_b:
        shared = _shared_ratio(fa.content, fb.content)
        if shared >= 0.3:
            # A direction word added or dropped ("in the first 48 hours" / "after the
            # first 48 hours"): the question changed its direction. Only where the texts
            # still share a third of their content words in order: a heavily reworded
            # paraphrase adds and drops such words as it goes ("most recent" for "last").
            return Verification(False, "antonym")
    if only_a and only_b:
        if shared < 0.0:
            shared = _shared_ratio(fa.content, fb.content)
        if shared >= 0.5:
            # Content words replaced in otherwise shared text ("cancel" for "pause",
            # another question about the same long context): the user's input changed.
            return Verification(False, "substitution")
    if len(only_a) + len(only_b) > 1:
        if shared < 0.0:
            shared = _shared_ratio(fa.content, fb.content)
        if shared >= 0.8:
            return Verification(False, "edit")
    return AGREE
