"""Signed receipt tokens: claims packed by config.receipt_token, signed with the store key.

Exceptions::

    ValueError
     └── InvalidToken   malformed token or signature that does not verify
"""

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config.receipt_token import (
    ReceiptClaims,
    TokenFormatError,
    decode_token,
    encode_token,
    pack,
    unpack,
)


class InvalidToken(ValueError):
    """A receipt token that is malformed or not signed by the expected store key."""


def issue_token(claims: ReceiptClaims, key: Ed25519PrivateKey) -> str:
    """Sign the packed claims and return the token text for the receipt URL."""
    payload = pack(claims)
    return encode_token(payload, key.sign(payload))


def verify_token(token: str, public_key: Ed25519PublicKey) -> ReceiptClaims:
    """Check the token's signature and return its claims; raise InvalidToken otherwise."""
    try:
        payload, signature = decode_token(token)
        public_key.verify(signature, payload)
        claims = unpack(payload)
    except TokenFormatError as err:
        raise InvalidToken(f"malformed receipt token: {err}") from err
    except InvalidSignature as err:
        raise InvalidToken("receipt token signature does not verify") from err
    return claims
