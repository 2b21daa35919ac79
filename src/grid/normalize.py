"""Owner name and mailing address normalization, for matching owners across entities (DOMAIN section 5).

Two records of one owner rarely spell it alike: ``ACME Holdings, L.L.C.`` and ``Acme Holdings LLC``;
``100 North Main Street, Suite 5`` and ``100 N. Main St. #5``. The normalizers map such variants to one string so
that portfolio resolution can link accounts by equal keys, with no fuzzy score to tune.

Every step only rewrites a token into its canonical spelling (Street -> st, Suite -> #, Incorporated -> inc) or
drops a token that carries no identity (a trailing legal form, a leading "The", commas). No step ever drops a
number, a letter of a name, or a distinguishing word, so look-alikes stay apart: ``100 Main St`` and
``1000 Main St``, ``Suite 5`` and ``Suite 50``, ``Acme Holdings`` and ``Acme Holding Partners``, ``Project 1
LLC`` and ``Project 2 LLC``. When in doubt a rule keeps records apart: a missed link can be added by a rule in
``rules/portfolios.yaml``, a false merge puts another owner's accounts in a portfolio.

Abbreviations follow USPS Publication 28 (street suffixes, secondary unit designators, directionals, states).
"""
from __future__ import annotations

import re
import unicodedata

from grid.errors import InvalidInput

__all__ = ["normalize_name", "normalize_address", "owner_key"]

# Letters and digits of any script (a Greek or Chinese name must not normalize to nothing), plus the two
# separators the address rules look at.
_TOKEN = re.compile(r"[^\W_]+|,|#")
_ZIP4 = re.compile(r"\b(\d{5})-\d{4}\b")
_UNIT_HYPHEN = re.compile(r"(?<=\d)-(?=[^\W\d_])|(?<=[^\W\d_])-(?=\d)")  # 4-B -> 4B, B-4 -> B4
_DROPPED = re.compile(r"[.'\u2019]")  # "L.L.C." -> "LLC", "O'Brien" -> "OBrien", "St." -> "St"

# --- names -------------------------------------------------------------------------------------------------

_NAME_WORDS = {
    "company": "co", "corporation": "corp", "incorporated": "inc", "limited": "ltd",
    "international": "intl", "brothers": "bros", "associates": "assoc", "association": "assn",
    "manufacturing": "mfg", "&": "and",
}
# Multi-word legal forms, written in canonical tokens (after _NAME_WORDS).
_NAME_PHRASES = {
    ("ltd", "liability", "co"): "llc",
    ("ltd", "liability", "partnership"): "llp",
    ("ltd", "liability", "ltd", "partnership"): "lllp",
    ("ltd", "partnership"): "lp",
    ("public", "ltd", "co"): "plc",
    ("professional", "corp"): "pc",
    ("professional", "llc"): "pllc",
    ("pty", "ltd"): "ltd",
}
# Legal forms that say how an owner is organised, not who it is: dropped at the end of a name.
_LEGAL_SUFFIXES = frozenset({
    "llc", "inc", "ltd", "corp", "co", "lp", "llp", "lllp", "plc", "pc", "pllc",
    "gmbh", "ag", "kg", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "pty", "pte", "ulc",
})

# --- addresses ---------------------------------------------------------------------------------------------

_ADDRESS_WORDS = {
    # street suffixes (USPS Pub. 28 C1), common spellings -> standard abbreviation
    "alley": "aly", "avenue": "ave", "av": "ave", "aven": "ave", "avenu": "ave", "avn": "ave", "avnue": "ave",
    "boulevard": "blvd", "boul": "blvd", "boulv": "blvd", "bypass": "byp", "causeway": "cswy",
    "center": "ctr", "centre": "ctr", "cntr": "ctr", "circle": "cir", "circ": "cir", "circl": "cir",
    "court": "ct", "cove": "cv", "creek": "crk", "crescent": "cres", "crossing": "xing",
    "drive": "dr", "driv": "dr", "drv": "dr", "expressway": "expy", "expy": "expy", "extension": "ext",
    "freeway": "fwy", "gardens": "gdns", "garden": "gdn", "heights": "hts", "highway": "hwy", "highwy": "hwy",
    "junction": "jct", "lane": "ln", "loop": "loop", "parkway": "pkwy", "parkwy": "pkwy", "pkway": "pkwy",
    "place": "pl", "plaza": "plz", "point": "pt", "ridge": "rdg", "road": "rd", "route": "rte",
    "square": "sq", "street": "st", "str": "st", "strt": "st", "terrace": "ter", "trail": "trl",
    "turnpike": "tpke", "way": "way",
    # place-name words with a standard abbreviation
    "saint": "st", "mount": "mt", "fort": "ft", "doctor": "dr",
    # secondary unit designators: the ones that name "the unit" are one designator (USPS allows "#" for any),
    # the ones that name a different thing (floor, room, building) keep their own.
    "apartment": "#", "apt": "#", "suite": "#", "ste": "#", "unit": "#",
    "floor": "fl", "room": "rm", "building": "bldg", "department": "dept", "office": "ofc",
    "space": "spc", "penthouse": "ph", "basement": "bsmt", "trailer": "trlr", "hangar": "hngr",
    # ordinals, so "First Street" meets "1st St"
    "first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th", "sixth": "6th",
    "seventh": "7th", "eighth": "8th", "ninth": "9th", "tenth": "10th",
}
_STREET_TYPES = frozenset({
    "aly", "ave", "blvd", "byp", "cswy", "ctr", "cir", "ct", "cv", "crk", "cres", "xing", "dr", "expy", "ext",
    "fwy", "gdns", "gdn", "hts", "hwy", "jct", "ln", "loop", "pkwy", "pl", "plz", "pt", "rdg", "rd", "rte",
    "sq", "st", "ter", "trl", "tpke", "way",
})
_DIRECTIONS = {
    "north": "n", "south": "s", "east": "e", "west": "w",
    "northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw",
}
_HOUSE_NUMBER_WORDS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_STATES = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca", "colorado": "co",
    "connecticut": "ct", "delaware": "de", "florida": "fl", "georgia": "ga", "hawaii": "hi", "idaho": "id",
    "illinois": "il", "indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky", "louisiana": "la",
    "maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi", "minnesota": "mn",
    "mississippi": "ms", "missouri": "mo", "montana": "mt", "nebraska": "ne", "nevada": "nv",
    "new hampshire": "nh", "new jersey": "nj", "new mexico": "nm", "new york": "ny", "north carolina": "nc",
    "north dakota": "nd", "ohio": "oh", "oklahoma": "ok", "oregon": "or", "pennsylvania": "pa",
    "rhode island": "ri", "south carolina": "sc", "south dakota": "sd", "tennessee": "tn", "texas": "tx",
    "utah": "ut", "vermont": "vt", "virginia": "va", "washington": "wa", "west virginia": "wv",
    "wisconsin": "wi", "wyoming": "wy", "district of columbia": "dc", "puerto rico": "pr",
}
_STATE_PHRASES = {tuple(name.split()): code for name, code in _STATES.items()}
_STATE_FIRST = frozenset(p[0] for p in _STATE_PHRASES)
_COUNTRY_PHRASES = (("united", "states", "of", "america"), ("united", "states"), ("usa",), ("us",))
_PO_BOX = {("p", "o", "box"): ("po", "box"), ("post", "office", "box"): ("po", "box"), ("pob",): ("po", "box")}


def _fold(text: str, field: str) -> str:
    """Case-folded text without accents (``Café`` -> ``cafe``), compatibility forms unified (full-width, ligatures)."""
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a str, got {type(text).__name__}", field=field)
    if text.isascii():  # the common case: NFKD changes no ASCII character and none is combining
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _replace_phrases(tokens: list[str], phrases: dict[tuple[str, ...], str | tuple[str, ...]]) -> list[str]:
    """Replace every occurrence of a phrase (longest first) by its canonical token(s)."""
    longest = max(len(p) for p in phrases)
    firsts = {p[0] for p in phrases}
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] not in firsts:  # no phrase starts here: skip the slices (most tokens)
            out.append(tokens[i])
            i += 1
            continue
        for size in range(min(longest, len(tokens) - i), 0, -1):
            canonical = phrases.get(tuple(tokens[i:i + size]))
            if canonical is not None:
                out.extend((canonical,) if isinstance(canonical, str) else canonical)
                i += size
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


def _join_initials(tokens: list[str]) -> list[str]:
    """Runs of single letters become one token: ``A B C Holdings`` meets ``A.B.C. Holdings`` (-> ``abc``)."""
    out: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if len(token) == 1 and token.isalpha():
            run.append(token)
            continue
        if run:
            out.extend(["".join(run)] if len(run) > 1 else run)
            run = []
        if token:
            out.append(token)
    return out


def normalize_name(name: str) -> str:
    """Canonical form of an owner's legal name, for equality matching.

    Case, accents, punctuation and spacing are dropped; ``&`` reads ``and``; legal forms are spelled one way
    (Incorporated -> inc, L.L.C. / Limited Liability Company -> llc) and dropped at the end of the name, as is a
    leading or trailing "The". Numbers and every other word are kept.

    Parameters
    ----------
    name : str
        A legal or trading name, e.g. ``"The ACME Holdings, L.L.C."``.

    Returns
    -------
    str
        Space-separated lower-case tokens, e.g. ``"acme holdings"``; ``""`` when nothing identifying is left
        (an empty key must not be used to link owners).
    """
    text = _DROPPED.sub("", _fold(name, "name")).replace("&", " & ")
    tokens = [t for t in re.findall(r"[^\W_]+|&", text)]
    tokens = _join_initials(tokens)
    tokens = [_NAME_WORDS.get(t, t) for t in tokens]
    if tokens:
        tokens = _replace_phrases(tokens, _NAME_PHRASES)
    while len(tokens) > 1 and tokens[0] == "the":
        tokens = tokens[1:]
    # "Smith & Co., Inc." -> "smith": legal forms, then a dangling "and" or an inverted "The", from the end.
    while len(tokens) > 1 and (tokens[-1] in _LEGAL_SUFFIXES or tokens[-1] in ("and", "the")):
        tokens.pop()
    return " ".join(tokens)


def _is_zip(token: str) -> bool:
    return len(token) == 5 and token.isdigit()


def _states_and_country(tokens: list[str]) -> list[str]:
    """State names to their codes and a trailing country dropped, only where they sit as a state or country.

    A state name counts as the state when a ZIP code follows it (a comma between them or not), or when it ends
    the address after a comma:
    "Washington" in ``100 Washington St`` stays a street name.
    """
    while tokens and tokens[-1] == ",":
        tokens = tokens[:-1]
    for phrase in _COUNTRY_PHRASES:
        size = len(phrase)
        if (len(tokens) > size and tuple(tokens[-size:]) == phrase
                and (tokens[-size - 1] == "," or _is_zip(tokens[-size - 1]))):
            tokens = tokens[:-size]
            break
    while tokens and tokens[-1] == ",":
        tokens = tokens[:-1]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] not in _STATE_FIRST:  # no state name starts with this word
            out.append(tokens[i])
            i += 1
            continue
        for size in (4, 3, 2, 1):
            code = _STATE_PHRASES.get(tuple(tokens[i:i + size]))
            if code is None:
                continue
            end = i + size
            after = end + 1 if end < len(tokens) and tokens[end] == "," else end
            at_zip = after < len(tokens) and _is_zip(tokens[after])
            at_end = end == len(tokens) and i > 0 and tokens[i - 1] == ","
            if at_zip or at_end:
                out.append(code)
                i = end
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


def normalize_address(address: str) -> str:
    """Canonical form of a street or mailing address, for equality matching.

    Case, accents, punctuation and spacing are dropped; street types, unit designators, directionals,
    ordinals and states take their USPS abbreviation; Suite / Ste / Apt / Unit / # are one designator; ZIP+4
    keeps its five-digit ZIP; a trailing country is dropped; leading zeros of numbers are dropped.
    Every number and every name word is kept.

    A directional that is the street's whole name stays a word: ``100 North St`` is not ``100 N St`` (in
    Washington DC those are different streets), while ``100 North Main St`` is ``100 N Main St``.

    Parameters
    ----------
    address : str
        E.g. ``"100 North Main Street, Suite 5, Springfield, Illinois 62701-1234"``.

    Returns
    -------
    str
        Space-separated lower-case tokens, e.g. ``"100 n main st # 5 springfield il 62701"``.
    """
    text = _fold(address, "address")
    text = _ZIP4.sub(r"\1", text)
    text = _UNIT_HYPHEN.sub("", _DROPPED.sub("", text))
    found = _TOKEN.findall(text)
    # Commas only mark boundaries for the state rule: one between two parts, none at the start.
    tokens = [t for i, t in enumerate(found) if not (t == "," and (i == 0 or found[i - 1] == ","))]
    if not tokens:
        return ""
    tokens = _replace_phrases(tokens, _PO_BOX)
    tokens = _states_and_country(tokens)
    if tokens and tokens[0] in _HOUSE_NUMBER_WORDS and len(tokens) > 1:
        tokens[0] = _HOUSE_NUMBER_WORDS[tokens[0]]  # "One Market Plaza" -> "1 market plz"
    tokens = [_ADDRESS_WORDS.get(t, t) for t in tokens]
    for i, token in enumerate(tokens):
        direction = _DIRECTIONS.get(token)
        if direction is None:
            continue
        street_name = (i == 1 and tokens[0].isdigit() and i + 1 < len(tokens) and tokens[i + 1] in _STREET_TYPES)
        if not street_name:
            tokens[i] = direction
    tokens = [(t.lstrip("0") or "0") if t.isdigit() else t for t in tokens if t != ","]
    return " ".join(tokens)


def owner_key(name: str, address: str) -> str:
    """Matching key of an owner: ``normalize_name(name) + "|" + normalize_address(address)``.

    Two entities with equal keys are taken to be one owner (DOMAIN section 5, "normalized owner name + mailing
    address"). Callers skip keys whose name part is empty.
    """
    return normalize_name(name) + "|" + normalize_address(address)
