"""The storelink cloud: stores sync into it, head office and regional staff work from it.

Follow one sale through the package: a store's sync daemon posts a signed batch
(:mod:`cloud.auth` verifies it), :mod:`cloud.ingest` stores each event once and turns the sale
into rows, the customer opens the receipt QR (:mod:`cloud.ereceipt`), :mod:`cloud.segments` and
:mod:`cloud.changes` send members and offers back down to the stores, :mod:`cloud.status`
shows each store's health and :mod:`cloud.export` hands head office the data.

Process wiring lives in :mod:`cloud.app` (composition root) and :mod:`cloud.cli` (the
``storelink-cloud`` command); the database in :mod:`cloud.db` and :mod:`cloud.schema`; the
wire contract with the stores in ``config/schemas/sync-protocol.md``. Nothing here imports the
store side (``agent``, ``drivers``).
"""
