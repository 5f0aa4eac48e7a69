"""API keys, compared without telling anything of them."""

import hashlib
import hmac


def same_key(given, key):
    """Whether two keys are equal, in a time that tells nothing of either:
    their digests (of one length whatever the keys') are compared in
    constant time."""
    digest = hashlib.sha256
    return hmac.compare_digest(
        digest(given.encode()).digest(), digest(key.encode()).digest()
    )
