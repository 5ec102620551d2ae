"""Wi-Fi probe-request sniffer driver (imports nothing of ours).

``probe`` decodes radiotap + 802.11 probe requests by hand and reads pcap/pcapng files,
``batch`` does the same a batch of records at a time into numpy columns (what capture files
go through), ``fingerprint`` digests a device's stable information elements, ``capture``
sniffs live on a monitor-mode interface with scapy's raw socket. The MAC address is replaced
by the caller's keyed hash inside the parser; SSIDs are reduced to one bit. Device notes:
docs/wifi.md.
"""

from drivers.wifi.batch import NO_RSSI, BatchParser, ProbeColumns, iter_probe_batches
from drivers.wifi.fingerprint import fingerprint
from drivers.wifi.probe import (
    ParseStats,
    PcapError,
    ProbeParser,
    ProbeRequest,
    iter_probes,
    read_pcap,
)

__all__ = [
    "NO_RSSI",
    "BatchParser",
    "ParseStats",
    "PcapError",
    "ProbeColumns",
    "ProbeParser",
    "ProbeRequest",
    "fingerprint",
    "iter_probe_batches",
    "iter_probes",
    "read_pcap",
]
