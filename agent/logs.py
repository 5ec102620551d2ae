"""Logging set-up of the store processes (agent, sync daemon): called by entry points only."""

from __future__ import annotations

import logging
import sys


class _StoreFilter(logging.Filter):
    def __init__(self, store_id: str) -> None:
        super().__init__()
        self.store_id = store_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.store = self.store_id
        return True


def setup_logging(store_id: str, verbose: bool = False) -> None:
    """One line per record on stdout (the journal), tagged with the store id."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_StoreFilter(store_id))
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s store=%(store)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # python-escpos logs every connection at INFO on the root logger.
    logging.getLogger("escpos").setLevel(logging.WARNING)
