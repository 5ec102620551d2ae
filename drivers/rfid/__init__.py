"""RFID fitting-room readers over LLRP (imports nothing of ours).

Modules, one job each:

- ``reads``      the ``TagRead`` reading shared by everything below;
- ``sgtin``      SGTIN-96 EPC encode/decode (GS1 TDS), pure functions;
- ``llrp``       the LLRP binary framing and the few messages a reader sends/parses;
- ``simulator``  an asyncio LLRP reader simulator the real sllurp client talks to;
- ``scenarios``  scripted, seeded fitting-room read streams with known truth;
- ``reader``     ``LlrpReader``: the sllurp client bridged into asyncio, with reconnects.

Errors::

    ValueError
    └── LlrpFrameError      a malformed or truncated LLRP frame/parameter (``llrp``)
    ValueError              a non-SGTIN-96 EPC or an invalid partition/field (``sgtin``)

``LlrpReader`` raises nothing for device trouble: it reports availability through ``on_state``.
"""
