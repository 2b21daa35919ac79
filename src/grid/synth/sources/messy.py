"""What people and legacy systems do to a name, an address or a number when they key it.

Each function takes the clean value and a random stream and returns the value as some source holds it, plus
the names of the defects it applied (the truth files record them, so identity matching can be scored per
defect class). Two families:

- *cosmetic* changes that :mod:`grid.normalize` undoes (case, punctuation, legal-suffix and street-type
  spellings, ``Suite`` vs ``Ste`` vs ``#``): records differing only so must match by equal keys;
- *damaging* changes that no normalizer undoes (a typo, a dropped legal suffix, a reordered person name, a
  missing field): records differing so need a fuzzy comparison, and a matcher that links them by equal keys
  would also link look-alikes.
"""
from __future__ import annotations

import numpy as np

from grid.synth import names as nm

# A US keyboard's neighbours: the typo a hurried clerk makes is next to the key meant.
_NEIGHBOURS = {
    "a": "qswz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc", "g": "ftyhbv", "h": "gyujnb",
    "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop", "m": "njk", "n": "bhjm", "o": "iklp", "p": "ol",
    "q": "wa", "r": "edft", "s": "awedxz", "t": "rfgy", "u": "yhji", "v": "cfgb", "w": "qase", "x": "zsdc",
    "y": "tghu", "z": "asx",
}
_EXPAND = {short: long for long, short in nm.STREET_ABBREV.items() if long != short}
_LEGAL = ("LLC", "L.L.C.", "L.L.C", "llc", "Inc.", "Inc", "INC", "Incorporated", "LP", "L.P.", "Corp.", "Corp",
          "Corporation", "CORP", "Co.", "Co", "Company")


def typo(text: str, rng: np.random.Generator) -> str:
    """One keying slip in one word of four letters or more: swap, drop, double or hit a neighbouring key."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if sum(ch.isalpha() for ch in w) >= 4]
    if not candidates:
        return text
    i = candidates[int(rng.integers(len(candidates)))]
    w = words[i]
    letters = [k for k, ch in enumerate(w) if ch.isalpha()]
    k = letters[int(rng.integers(1, len(letters)))]  # never the first letter: people rarely miss that one
    kind = int(rng.integers(4))
    if kind == 0 and k + 1 < len(w) and w[k + 1].isalpha():
        w = w[:k] + w[k + 1] + w[k] + w[k + 2:]
    elif kind == 1:
        w = w[:k] + w[k + 1:]
    elif kind == 2:
        w = w[:k] + w[k] + w[k:]
    else:
        near = _NEIGHBOURS.get(w[k].lower(), w[k].lower())
        ch = near[int(rng.integers(len(near)))]
        w = w[:k] + (ch.upper() if w[k].isupper() else ch) + w[k + 1:]
    words[i] = w
    return " ".join(words)


def reorder_person(name: str, rng: np.random.Generator) -> str:
    """``John Smith`` as a county or billing system files it: ``SMITH JOHN`` or ``Smith, John``."""
    parts = name.split(" ")
    if len(parts) < 2:
        return name
    first, last = " ".join(parts[:-1]), parts[-1]
    return f"{last} {first}".upper() if rng.random() < 0.5 else f"{last}, {first}"


def drop_legal_suffix(name: str) -> str:
    """``Acme Holdings, LLC`` -> ``Acme Holdings``: what a sales rep types (normalizers keep the suffix apart)."""
    words = name.rstrip().split(" ")
    if len(words) > 1 and words[-1] in _LEGAL:
        words = words[:-1]
        words[-1] = words[-1].rstrip(",")
    return " ".join(words)


def expand_address(address: str) -> str:
    """``100 Oak St Ste 4`` -> ``100 Oak Street Suite 4``: the long forms a customer types."""
    words = address.split(" ")
    for i, w in enumerate(words):
        bare = w.rstrip(".,")
        tail = w[len(bare):].replace(".", "")
        if bare in _EXPAND:
            words[i] = _EXPAND[bare] + tail
        elif bare in ("Ste", "STE"):
            words[i] = "Suite" + tail
    return " ".join(words)


def street_line(address: str) -> str:
    """The street part of ``"100 Oak Street Suite 4, Fresno, CA 93650"`` (``"100 Oak Street Suite 4"``)."""
    return address.split(",")[0].strip()


def split_address(address: str) -> tuple[str, str, str, str]:
    """``(street, city, state, zip)`` of a generator address ``"street, city, ST 99999"``."""
    parts = [p.strip() for p in address.split(",")]
    if len(parts) < 3:
        return address, "", "", ""
    state, _, zip_code = parts[-1].partition(" ")
    return ", ".join(parts[:-2]), parts[-2], state, zip_code


def hand_typed_name(name: str, rng: np.random.Generator, *, person: bool) -> tuple[str, list[str]]:
    """A name as a person keys it into a spreadsheet or a form: its variants and the defects applied."""
    defects = []
    if person:
        if rng.random() < 0.15:
            name = reorder_person(name, rng)
            defects.append("reordered")
    else:
        if rng.random() < 0.35:
            stripped = drop_legal_suffix(name)
            if stripped != name:
                name = stripped
                defects.append("suffix_dropped")
        if rng.random() < 0.5:
            name = nm.name_variant(name, rng)
            defects.append("cosmetic")
    if rng.random() < 0.12:
        name = typo(name, rng)
        defects.append("typo")
    return name, defects


def hand_typed_address(address: str, rng: np.random.Generator) -> tuple[str, list[str]]:
    """An address as a person keys it: abbreviated or spelled out, sometimes without city and ZIP, typos."""
    defects = []
    r = rng.random()
    if r < 0.4:
        address = nm.address_variant(address, rng)
        defects.append("abbreviated")
    elif r < 0.6:
        address = expand_address(address)
        defects.append("expanded")
    if rng.random() < 0.2:
        address = street_line(address)
        defects.append("no_city")
    if rng.random() < 0.1:
        address = typo(address, rng)
        defects.append("typo")
    return address, defects


def national_phone(e164: str, rng: np.random.Generator) -> str:
    """``+15595551234`` as a person writes it: ``(559) 555-1234``, ``559-555-1234``, ``559.555.1234``."""
    d = e164[-10:]
    forms = (f"({d[:3]}) {d[3:6]}-{d[6:]}", f"{d[:3]}-{d[3:6]}-{d[6:]}", f"{d[:3]}.{d[3:6]}.{d[6:]}", d,
             f"1-{d[:3]}-{d[3:6]}-{d[6:]}")
    return forms[int(rng.integers(len(forms)))]
