"""Field comparisons (levels of agreement) and Fellegi-Sunter scoring of a record against a customer's member.

Each field has an ordered list of levels, best first (:data:`LEVELS`), as Splink's comparison levels: the first
level whose test holds is the pair's level. A member holds several values of a field (a context's addresses);
the pair's level is the best over every value pair, and the evidence names the two values that met.
A field missing on either side has no level (weight 0: absence is not evidence).

Similarity functions come from ``rapidfuzz`` (Jaro-Winkler, token-set ratio, Damerau-Levenshtein), all C.
"""
from __future__ import annotations

import functools
import math

from rapidfuzz import fuzz
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from grid.identity.evidence import Comparison
from grid.identity.members import GENERATIONS, Member, split_address

__all__ = ["LEVELS", "compare", "score", "FIELDS"]

LEVELS: dict[str, tuple[str, ...]] = {
    "name": ("exact", "jaro_winkler_92", "token_set_90", "jaro_winkler_80", "else", "generation_differs"),
    "address": ("exact", "house_street", "token_set_85", "else"),
    "phone": ("exact", "last_7", "else"),
    "email": ("exact", "damerau_1", "same_local", "else"),
    "tax_id": ("exact", "else"),
}
FIELDS = tuple(LEVELS)
_ATTR = {"name": "names", "address": "addresses", "phone": "phones", "email": "emails", "tax_id": "tax_ids"}


@functools.lru_cache(maxsize=1 << 16)
def _name_parts(name: str) -> tuple[tuple[str, ...], frozenset, str]:
    """(sorted tokens, generation suffixes, the name without them): computed once per distinct name."""
    tokens = name.split()
    gens = frozenset(t for t in tokens if t in GENERATIONS)
    return tuple(sorted(tokens)), gens, " ".join(t for t in tokens if t not in GENERATIONS)


def _name_level(a: str, b: str) -> int:
    if a == b:
        return 0
    sa, ga, ra = _name_parts(a)
    sb, gb, rb = _name_parts(b)
    if ga != gb:
        # Jr against Sr or against no suffix: a father and his son share a name, often an address and a phone
        if ra == rb or JaroWinkler.similarity(ra, rb) >= 0.92:
            return 5
    if sa == sb:
        return 0  # "Garcia, Maria" is how a clerk writes Maria Garcia: a reorder is no difference
    jw = JaroWinkler.similarity(a, b)
    if jw >= 0.92:
        return 1
    if min(len(sa), len(sb)) >= 2 and fuzz.token_set_ratio(a, b) >= 90:  # reordered, or a word added
        return 2
    if jw >= 0.80:
        return 3
    return 4


def _address_level(a: str, b: str) -> int:
    if a == b:
        return 0
    ha, sa, _ = split_address(a)
    hb, sb, _ = split_address(b)
    if ha and ha == hb and sa and sb and JaroWinkler.similarity(sa, sb) >= 0.88:
        return 1  # same number on (nearly) the same street: unit, city or ZIP differ or are missing
    if ha == hb and fuzz.token_set_ratio(a, b) >= 85:
        return 2
    return 3


def _phone_level(a: str, b: str) -> int:
    if a == b:
        return 0
    if a[-7:] == b[-7:]:
        return 1  # same line, area code keyed wrong or changed by an overlay
    return 2


def _email_level(a: str, b: str) -> int:
    if a == b:
        return 0
    la, _, da = a.partition("@")
    lb, _, db = b.partition("@")
    if da == db and DamerauLevenshtein.distance(la, lb) <= 1:
        return 1
    if la == lb:
        return 2
    return 3


def _tax_level(a: str, b: str) -> int:
    return 0 if a == b else 1


_LEVEL_OF = {"name": _name_level, "address": _address_level, "phone": _phone_level, "email": _email_level,
             "tax_id": _tax_level}


def compare(record: Member, member: Member, fields: tuple[str, ...] = FIELDS) -> list[tuple[str, int, str, str]]:
    """(field, level index, record value, member value) for every field both sides have."""
    out = []
    for f in fields:
        ra = getattr(record, _ATTR[f])
        ma = getattr(member, _ATTR[f])
        if not ra or not ma:
            continue
        fn = _LEVEL_OF[f]
        best = None
        for x in ra:
            for y in ma:
                lv = fn(x, y)
                if best is None or lv < best[0]:
                    best = (lv, x, y)
                    if lv == 0:
                        break
            if best[0] == 0:
                break
        out.append((f, best[0], best[1], best[2]))
    return out


def score(rules, levels: list[tuple[str, int, str, str]]) -> tuple[float, list[Comparison]]:
    """Total match weight (prior + one weight per compared field) and the comparisons behind it."""
    total = rules.prior_weight
    comps = []
    weights = {c.field: c for c in rules.comparators}
    for f, lv, x, y in levels:
        c = weights.get(f)
        if c is None:
            continue
        w = math.log2(c.m[lv] / c.u[lv])
        total += w
        comps.append(Comparison(field=f, level=c.levels[lv], weight=round(w, 3), record=x, customer=y))
    return total, comps


def probability(weight: float) -> float:
    """Match probability of a total weight in bits."""
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    b = 2.0 ** weight
    return b / (1 + b)
