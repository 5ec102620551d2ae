"""RFID in the agent: fitting-room readers → try-on sessions → ``tryon`` events.

One read's path: ``drivers.rfid.reader.LlrpReader`` (sllurp, bridged onto the loop) →
:mod:`agent.rfid.service` (maps the reader's clock, sums raw reads per second) →
:mod:`agent.rfid.sessions` (pure: room by strongest antenna, hysteresis, min dwell, max
duration) → :mod:`agent.rfid.products` (SGTIN-96 → GTIN → SKU from the replica) → the outbox.

Modules: ``config`` (the ``[rfid]`` section), ``schema`` (the ``rfid_reads`` table),
``sessions``, ``products``, ``rawreads`` (per-second sums, retention), ``service``, ``cli``
(``storelink-agent rfid simulate``).

Decisions worth knowing:

* Default tuning (window 3 s, min dwell 30 s, end after 10 s, max duration 30 min) is what
  scores precision and recall 1.0 on the scripted scenarios in tests/rfid/test_accuracy.py;
  a min dwell of 10 s let people browsing past the rooms through (precision 0.70).
* A room belongs to one reader (a config error otherwise), so a try-on's reader follows
  from its room; one reader may watch a room with several antennas.
* Reader timestamps order reads and measure dwell; their wall time is not trusted: each
  reader's clock is mapped onto the agent's by the smallest observed lag, re-anchored when it
  jumps or the reader reconnects (``sessions.ReaderClock``).
* At shutdown, visits past the minimum dwell close as ``shutdown``; shorter ones are dropped
  (they cannot be told from a garment carried past).
* Raw reads never reach the outbox; they are kept ``raw_read_retention_days`` in the store.
"""
