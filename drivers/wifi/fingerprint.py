"""A 64-bit fingerprint of a probe request's information elements (IEs).

Phones randomise their MAC address but keep sending the same capabilities, so the set and
order of IEs and the content of the capability elements identify a device model and its
configuration well (Vanhoef et al. 2016, "Why MAC address randomization is not enough";
Martin et al. 2017). The fingerprint keeps only what is stable for a device across
randomised addresses:

- the ordered list of element ids (without SSID and DS Parameter Set);
- the full content of the capability elements listed in ``_CONTENT_IDS``;
- Vendor Specific (221): the OUI and vendor type only (the rest may carry per-frame data);
- Extension (255): the extension id, plus the content for the capability extensions in
  ``_EXT_CONTENT_IDS``.

It leaves out SSID (0: the network asked for, a privacy risk and not a device property),
DS Parameter Set (3: the channel the frame was sent on) and the content of every other
element. The input is the IE region after the 24-byte 802.11 header; a truncated last
element ends the walk (the parser counts such frames as malformed before asking).
"""

from __future__ import annotations

from hashlib import blake2b

# Elements whose whole content is a stable device capability.
_CONTENT_IDS = frozenset(
    {
        1,  # Supported Rates
        45,  # HT Capabilities
        50,  # Extended Supported Rates
        59,  # Supported Operating Classes
        70,  # RM Enabled Capabilities
        107,  # Interworking
        127,  # Extended Capabilities
        191,  # VHT Capabilities
    }
)
# Extension elements (id 255) whose content is a stable capability, by extension id.
_EXT_CONTENT_IDS = frozenset(
    {
        35,  # HE Capabilities
        59,  # HE 6 GHz Band Capabilities
        108,  # EHT Capabilities
    }
)
_SKIPPED_IDS = frozenset({0, 3})  # SSID, DS Parameter Set
_VENDOR = 221
_EXTENSION = 255


def fingerprint(ies: memoryview) -> int:
    """The 64-bit fingerprint of the IE region ``ies`` (see the module docstring)."""
    out = bytearray()
    n = len(ies)
    pos = 0
    while pos + 2 <= n:
        eid = ies[pos]
        length = ies[pos + 1]
        start = pos + 2
        pos = start + length
        if pos > n:
            break
        if eid in _SKIPPED_IDS:
            continue
        if eid in _CONTENT_IDS:
            out.append(eid)
            out.append(length)
            out += ies[start:pos]
        elif eid == _VENDOR:
            # OUI (3 bytes) and vendor type (1 byte); shorter bodies are kept whole.
            kept = min(length, 4)
            out.append(eid)
            out.append(kept)
            out += ies[start : start + kept]
        elif eid == _EXTENSION and length:
            out.append(eid)
            ext = ies[start]
            if ext in _EXT_CONTENT_IDS:
                out.append(length)
                out += ies[start:pos]
            else:
                out.append(ext)
        else:
            out.append(eid)
    return int.from_bytes(blake2b(out, digest_size=8).digest(), "little")
