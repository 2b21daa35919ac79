"""The county assessor's secured tax roll, ``tax_roll.csv``: one row per parcel, in the county's own style.

Columns as California counties publish them: APN, owner name (upper case; people ``LAST FIRST``), a care-of
line (an SPV is mailed care of its registered agent, shared with unrelated SPVs), the owner's mailing address,
the situs (the parcel's street address: upper case, USPS abbreviations, city and ZIP apart), a use code and the
assessed value in whole dollars. Every premise of the base sits on a parcel; the roll also has parcels with no
premise (vacant land), whose truth customer is empty.

Defects: ``stale_owner`` (a home sold since the roll was certified: the previous owner's name), ``sold`` (the
home a customer moved out of, a closed account's premise: someone else owns it, truth customer empty),
``typo`` in the situs, ``missing_zip``; commercial owners appear exactly as their entity is registered, so matching a
parcel to an account's owner goes through the situs address (the premise) and then the entity.

Truth: ``truth/tax_roll.csv`` (key = APN, customer = the premise's customer, entity = the true owner).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from grid.synth import names as nm
from grid.synth.sources import messy
from grid.synth.sources.records import BaseChunk, CsvFile, Truth

COLUMNS = ("APN", "OWNER_NAME", "CARE_OF", "MAIL_ADDRESS", "MAIL_CITY_STATE_ZIP", "SITUS_ADDRESS", "SITUS_CITY",
           "SITUS_ZIP", "USE_CODE", "ASSESSED_VALUE", "TAX_YEAR")
USE_CODES = {"single_family": "R1", "multi_family": "R2", "mobile_home": "R4", "office": "C2", "retail": "C1",
             "restaurant": "C3", "grocery": "C1", "hotel": "C5", "warehouse": "I2", "medical_office": "C2",
             "auto_service": "C4", "manufacturing": "I1", "food_processing": "I1", "cold_storage": "I2",
             "data_center": "I3", "chemical": "I1"}
EXEMPT = "E1"  # public agencies' parcels: exempt, assessed at zero
VACANT = "V1"
VACANT_RATE = 0.04
STALE_OWNER_RATE = 0.05


def situs(address: str) -> tuple[str, str, str]:
    """``(street, city, zip)`` in the county's style: ``8285 LEMON CIR``, ``DELANO``, ``93225``."""
    street, city, _, zip_code = messy.split_address(address)
    words = []
    for w in street.replace(" Suite ", " STE ").split(" "):
        words.append(nm.STREET_ABBREV.get(w, w))
    return " ".join(words).upper(), city.upper(), zip_code


def split_care_of(mailing: str) -> tuple[str | None, str]:
    """``"c/o CT Corporation System, 330 N Brand Blvd..."`` -> ``("CT Corporation System", "330 N Brand Blvd...")``."""
    if mailing.lower().startswith("c/o "):
        agent, _, rest = mailing[4:].partition(", ")
        return agent, rest
    return None, mailing


class TaxRoll:
    """Writes ``tax_roll.csv`` and ``truth/tax_roll.csv`` chunk by chunk."""

    source = "tax_roll"
    file = "tax_roll.csv"

    def __init__(self, root: Path, manifest: dict):
        self.out = CsvFile(root / self.file, COLUMNS)
        self.truth = Truth(root, self.source)
        self.year = int(manifest["months"][-1][:4])
        self.seen: set[str] = set()

    def _apn(self, rng: np.random.Generator) -> str:
        while True:  # book-page-parcel; drawn, so neighbours on the roll are not neighbours in the base
            apn = f"{int(rng.integers(1, 999)):03d}-{int(rng.integers(1, 999)):03d}-{int(rng.integers(1, 99)):02d}"
            if apn not in self.seen:
                self.seen.add(apn)
                return apn

    def add(self, chunk: BaseChunk, rng: np.random.Generator) -> None:
        premises: dict[str, dict] = {}
        for sp in chunk.service_points:
            premises.setdefault(sp["premise_address"], sp)
        for address, sp in premises.items():
            c = chunk.customer[sp["customer_id"]]
            chain = chunk.owner_chain(c)
            owner = chain[0] if chain else {"legal_name": c["name"], "mailing_address": address, "entity_id": None}
            defects = []
            name = owner["legal_name"]
            cid = c["customer_id"]
            active = any(a["status"] == "active" for a in chunk.accounts_of.get(cid, [])
                         if chunk.sp_of_account.get(a["account_id"], {}).get("premise_address") == address)
            if c["kind"] == "residential" and not active:  # the home the customer moved out of: sold since
                name, cid = nm.person_name(rng), None
                owner = {"legal_name": name, "mailing_address": address, "entity_id": None}
                defects.append("sold")
            elif c["kind"] == "residential" and rng.random() < STALE_OWNER_RATE:
                name = nm.person_name(rng)
                defects.append("stale_owner")
            if c["kind"] == "residential":
                name = messy.reorder_person(name, rng).replace(",", "").upper()
            else:
                name = name.upper()
            care_of, mailing = split_care_of(owner["mailing_address"] or "")
            m_street, m_city, m_state, m_zip = messy.split_address(mailing)
            s_street, s_city, s_zip = situs(address)
            if rng.random() < 0.02:
                s_street = messy.typo(s_street, rng)
                defects.append("typo")
            if rng.random() < 0.03:
                s_zip = ""
                defects.append("missing_zip")
            attrs = c.get("attributes") or {}
            if c["kind"] == "public":
                use, value = EXEMPT, 0
            else:
                use = USE_CODES.get(c["segment"], "C9")
                per_sqft = (150, 420) if c["kind"] == "residential" else (60, 260)
                value = int(attrs.get("sqft", 2000) * rng.integers(*per_sqft)) // 100 * 100
            apn = self._apn(rng)
            row = self.out.write((apn, name, care_of.upper() if care_of else None, m_street.upper(),
                                  f"{m_city} {m_state} {m_zip}".strip().upper(), s_street, s_city, s_zip, use,
                                  value, self.year))
            self.truth.record(self.file, row, apn, cid, defects, owner.get("entity_id"))
            if rng.random() < VACANT_RATE:
                self._vacant(rng)

    def _vacant(self, rng: np.random.Generator) -> None:
        owner = nm.person_name(rng)
        address = nm.random_street_address(rng)
        s_street, s_city, s_zip = situs(address)
        m_street, m_city, m_state, m_zip = messy.split_address(nm.random_street_address(rng))
        apn = self._apn(rng)
        row = self.out.write((apn, messy.reorder_person(owner, rng).replace(",", "").upper(), None,
                              m_street.upper(), f"{m_city} {m_state} {m_zip}".upper(), s_street, s_city, s_zip,
                              VACANT, int(rng.integers(20, 400)) * 1000, self.year))
        self.truth.record(self.file, row, apn, None, ["vacant"])

    def close(self) -> dict:
        self.out.close()
        self.truth.close()
        return {"kind": "file", "format": "csv", "file": self.file, "rows": self.out.rows,
                "truth": f"truth/{self.source}.csv"}
