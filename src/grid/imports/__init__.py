"""Continuous import: sources described as data, read, mapped, linked to customers and written exactly once.

Modules, in the order a row travels:

* ``sources``   one YAML file per source (JSON Schema ``source.schema.json``), compiled and reloadable.
* ``readers``   the reader protocol (batches of rows with a resume position) and the file readers.
* ``mapping``   raw columns -> context fields, vectorized per batch; bad values name their row and field.
* ``linking``   whose context a row belongs to (deterministic keys, or ``grid.identity`` when present).
* ``importer``  drives a source: read (file, push, replay), map, count progress; hands each batch to
* ``batch_writer``  link, quarantine the bad, route by shard, write ``import_rows`` ops, settle refusals.
* ``apply``     the ``import_rows`` op on a shard: rows + position in one WAL record, skipped once applied;
  what the rows do is ``usage_rows`` (interval stores) and ``record_actions`` (upsert, payment, bill, ...).
* ``state``     a shard's import state (positions per source and stream), snapshotted with the shard.
* ``quarantine`` durable refused rows per source, readable and replayable.
* ``watch``     watched folders (``watchfiles``), one task per folder source (and per database source).

Sources with their own reading (issue 11 part B):

* ``readers.postgres`` + ``follow``  a PostgreSQL table: snapshot, then logical decoding (or polling), the slot
  advanced only once the grid holds the batch; ``pg_instance`` runs a local cluster for tests and the demo.
* ``espi`` + ``espi_export``  Green Button (NAESB ESPI) files in, "Download My Data" out.
* ``taxroll``   the county tax roll matched to premises: ownership evidence for portfolio resolution.
* ``demo``      the messy sources ``serve --demo`` feeds in.
"""
