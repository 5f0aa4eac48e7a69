"""Tokens as a host site signs them, for the tests of verified people."""

import time

import jwt

SECRET = "s" * 40


def token(sub="ann", secret=SECRET, algorithm="HS256", ttl=600, **claims):
    """A JWT for `sub`, expiring in `ttl` seconds, with more claims."""
    claims = {"sub": sub, "exp": int(time.time()) + ttl, **claims}
    return jwt.encode(claims, secret, algorithm=algorithm)


def bearer(sub="ann", **claims):
    """The Authorization header of a request made with a token."""
    return {"Authorization": f"Bearer {token(sub, **claims)}"}
