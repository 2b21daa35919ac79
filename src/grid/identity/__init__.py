"""Customer identity: whose context each incoming record belongs to (DOMAIN.md section 8, issue 12).

- :mod:`.evidence`: the interface (``Evidence`` in, ``Resolution`` out) importers code against;
- :mod:`.members`, :mod:`.compare`: normalized records, their keys, field comparisons and Fellegi-Sunter weights;
- :mod:`.rules`: ``rules/identity.yaml``; :mod:`.training`: m/u estimated from the data (EM);
- :mod:`.resolver`: the decision shared by the incremental and the batch path (:mod:`.batch`);
- :mod:`.index`, :mod:`.ops`, :mod:`.reads`: the per-shard index, its write kinds and reads;
- :mod:`.merge`: merge and unmerge across shards; :mod:`.golden`: the golden record;
- :mod:`.client`: the grid client's identity operations (resolve, reviews, merges, the importers' entry);
- :mod:`.portfolios`: why each account is in its portfolio; :mod:`.feeds`: the generator's messy sources as
  evidence with their truth (tests and ``bench/bench_identity.py``).
"""
from grid.identity.evidence import Candidate, Comparison, Evidence, Resolution, decode_records

__all__ = ["Evidence", "Resolution", "Comparison", "Candidate", "decode_records", "aresolve_batch"]


async def aresolve_batch(grid, records: list[dict]) -> list[dict]:
    """The importer's entry point (``grid.imports.linking.resolve``): one resolution dict per evidence row."""
    from grid.identity.client import resolve_for_import

    return await resolve_for_import(grid, records)
