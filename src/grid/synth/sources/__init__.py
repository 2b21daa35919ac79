"""The messy world a utility's data really lives in, written beside a generated base, with the truth.

``generate_sources(base_dir)`` writes ``base_dir/feeds/``:

- ``billing/``: the billing system's database dump, ``schema.sql`` and one CSV per table (customers,
  accounts, premises, meters, bills, payments), to load into PostgreSQL (:mod:`.billing`);
- ``meter_reads.csv``: the meter-data system's interval export, meter id, local time, kWh (:mod:`.meters`);
- ``key_accounts.xlsx``: the key-accounts team's hand-typed workbook (:mod:`.sheets`);
- ``tax_roll.csv``: the county's secured tax roll, owners and situs addresses (:mod:`.taxroll`);
- ``web_contacts.csv``: what customers typed into the web form (:mod:`.webforms`);
- ``greenbutton/*.xml``: Green Button files customers downloaded, named by the portal's usage point ids
  (:mod:`.greenbutton`; the manifest holds the usage point -> service point registrations);
- ``truth/<source>.csv``: the customer (and owner) each row truly belongs to, with the defects applied
  (:mod:`.records`; read with :func:`read_truth`);
- ``manifest.json``, last.
"""
from grid.synth.sources.generate import FORMAT, SOURCES, generate_sources
from grid.synth.sources.records import TRUTH_COLUMNS, read_truth

__all__ = ["FORMAT", "SOURCES", "TRUTH_COLUMNS", "generate_sources", "read_truth"]
