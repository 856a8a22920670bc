"""Payment tokens that need no ledger write: the card's kept part, sealed.

A token is what the ledger may keep of a card (`cards.CardInfo`: brand, last
four, expiry, test behaviour; never the number, never the CVV), encrypted and
authenticated with AES-GCM under a key only payment holds (kept in its ledger,
made once). Tokenizing is then arithmetic, with no write and no fsync on the
checkout's path; an authorize opens its token and records the card's kept part
with the transaction (`Ledger.authorize`). A token that does not open under the
key (forged, altered, another ledger's) is unknown, as a made-up one always was.
Each seal takes a fresh nonce, so one card tokenized twice gives two tokens.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bookstore.payment.cards import Behaviour, CardInfo

PREFIX = "tok_"
KEY_BYTES = 32
_NONCE_BYTES = 12
_BEHAVIOURS = list(Behaviour)  # sealed as its position: a short token


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


class Sealer:
    """Seals a card's kept part into a token and opens it again; no I/O."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, card: CardInfo) -> str:
        plain = "|".join(
            (card.brand, card.last4, card.expiration, str(_BEHAVIOURS.index(card.behaviour)))
        )
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plain.encode(), PREFIX.encode())
        return PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, token: str) -> CardInfo | None:
        """The card a token of this key was sealed from; None for any other string."""
        if not token.startswith(PREFIX):
            return None
        body = token[len(PREFIX) :]
        try:
            sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
            plain = self._aead.decrypt(nonce, ciphertext, PREFIX.encode()).decode()
            brand, last4, expiration, behaviour = plain.split("|")
            return CardInfo(brand, last4, expiration, _BEHAVIOURS[int(behaviour)])
        except (binascii.Error, InvalidTag, ValueError, IndexError):
            return None
