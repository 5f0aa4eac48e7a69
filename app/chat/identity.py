"""Who a person is: a guest, or someone a host site vouches for with a
signed token (a JWT), and which private channels they may enter.

The host site, which has its own logins, signs a short-lived token for its
signed-in person: `sub` (their id there), `exp`, and optionally `name`,
`channels` (the private channels they may enter: names, or prefixes ending
in `*`) and `role` (`moderator`). The chat checks the signature with PyJWT,
HS256 with CHAT_TOKEN_SECRET or RS256/ES256 with CHAT_TOKEN_PUBLIC_KEY, and
never asks anyone for a password. Without a token a person is a guest,
unless CHAT_AUTH is `required`.
"""

import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.chat import rules
from app.chat.errors import ChatError

MIN_SECRET_LENGTH = 32
TOKEN_MAX_LENGTH = 4096
SUB_MAX_LENGTH = 64
MAX_CHANNEL_GRANTS = 100
ROLES = ("moderator",)
AUTH_MODES = ("open", "required")


@dataclass(frozen=True)
class Person:
    """Who is behind a connection or a request.

    `user_id` is the token's `sub`, None for a guest; `channels` are the
    private channels granted, as names and prefixes (`$team-*`); `expires`
    is the token's exp, in seconds since the epoch.
    """

    user_id: str | None = None
    name: str | None = None
    channels: tuple = ()
    role: str | None = None
    expires: float | None = None

    @property
    def verified(self):
        return self.user_id is not None

    @property
    def moderator(self):
        return self.role == "moderator"

    def may_enter(self, channel):
        """Whether this person may enter a (valid) channel: any public one,
        and the private ones their token names."""
        if not rules.is_private(channel):
            return True
        return any(
            channel.startswith(grant[:-1]) if grant.endswith("*") else channel == grant
            for grant in self.channels
        )

    def check_access(self, channel):
        """Refuse a private channel this person may not enter with
        `forbidden`, which says nothing of whether it exists."""
        if not self.may_enter(channel):
            raise ChatError(
                "forbidden",
                f"{channel} is a private channel: your token does not grant it",
                status=403,
            )


GUEST = Person()


class Tokens:
    """Verifies the host site's tokens, and mints them where the chat holds
    the secret (`flask chat token`, tests)."""

    def __init__(self, config):
        self.required = _auth_mode(config["CHAT_AUTH"]) == "required"
        self.leeway = config["CHAT_TOKEN_LEEWAY"]
        self.secret = config["CHAT_TOKEN_SECRET"]
        public = config["CHAT_TOKEN_PUBLIC_KEY"]
        if self.secret and public:
            raise RuntimeError(
                "set CHAT_TOKEN_SECRET or CHAT_TOKEN_PUBLIC_KEY, not both"
            )
        if self.secret:
            if len(self.secret) < MIN_SECRET_LENGTH:
                raise RuntimeError(
                    f"CHAT_TOKEN_SECRET has {len(self.secret)} characters; it "
                    f"needs at least {MIN_SECRET_LENGTH}"
                )
            self.key, self.algorithms = self.secret, ["HS256"]
        elif public:
            self.key, self.algorithms = _public_key(public)
        else:
            self.key, self.algorithms = None, []
        if self.required and self.key is None:
            raise RuntimeError(
                "CHAT_AUTH=required needs CHAT_TOKEN_SECRET or CHAT_TOKEN_PUBLIC_KEY"
            )

    def person(self, token):
        """The person a token vouches for; a guest without one (refused as
        `unauthorized` when CHAT_AUTH is required)."""
        if token is None:
            if self.required:
                raise ChatError(
                    "unauthorized", "this chat needs a token: sign in", status=401
                )
            return GUEST
        return self.verify(token)

    def verify(self, token):
        """The Person of a valid token, or `invalid_token` / `token_expired`
        (401)."""
        if not isinstance(token, str) or not 0 < len(token) <= TOKEN_MAX_LENGTH:
            raise _invalid("token must be a JWT string")
        if not token.isascii():  # a JWT is base64url: lone surrogates and all
            raise _invalid("the token is not valid: not a JWT")
        if self.key is None:
            raise _invalid("this chat verifies no tokens (no key is set)")
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                leeway=self.leeway,
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise ChatError(
                "token_expired", "the token has expired: get a new one", status=401
            ) from None
        except jwt.InvalidTokenError as error:
            raise _invalid(f"the token is not valid: {error}") from None
        return _person(claims)

    def mint(self, sub, name=None, channels=(), role=None, ttl=3600):
        """A token signed with CHAT_TOKEN_SECRET, as a host site makes them."""
        if not self.secret:
            raise RuntimeError("minting a token needs CHAT_TOKEN_SECRET")
        claims = {"sub": sub, "exp": int(time.time() + ttl)}
        if name:
            claims["name"] = name
        if channels:
            claims["channels"] = list(channels)
        if role:
            claims["role"] = role
        _person(claims)  # refuse to sign what would be refused
        return jwt.encode(claims, self.secret, algorithm="HS256")


def _auth_mode(value):
    mode = (value or "open").strip().lower()
    if mode not in AUTH_MODES:
        raise RuntimeError(f"CHAT_AUTH must be one of {', '.join(AUTH_MODES)}")
    return mode


def _public_key(pem):
    """The key and the one algorithm its type signs with: RS256 for RSA,
    ES256 for a P-256 key. Pinned, so that no token can pick another."""
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError as error:
        raise RuntimeError(f"CHAT_TOKEN_PUBLIC_KEY is not a PEM key: {error}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, ["RS256"]
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return key, ["ES256"]
    raise RuntimeError("CHAT_TOKEN_PUBLIC_KEY must be an RSA or a P-256 key")


def _invalid(message):
    return ChatError("invalid_token", message, status=401)


def _person(claims):
    """The Person of verified claims, or `invalid_token` for a claim of the
    wrong shape."""
    sub = claims["sub"]
    if not isinstance(sub, str) or not 1 <= len(sub) <= SUB_MAX_LENGTH:
        raise _invalid(f"sub must be a string of 1 to {SUB_MAX_LENGTH} characters")
    try:
        name = rules.display_name(claims.get("name", sub[: rules.NAME_MAX_LENGTH]))
    except ChatError as error:
        raise _invalid(f"name: {error.message}") from None
    role = claims.get("role")
    if role is not None and role not in ROLES:
        raise _invalid(f"role must be one of {', '.join(ROLES)}")
    return Person(sub, name, _grants(claims.get("channels")), role, claims["exp"])


def _grants(value):
    """The `channels` claim: private channel names, or prefixes ending in
    `*`, each with or without its leading `$`."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_CHANNEL_GRANTS:
        raise _invalid(f"channels must be a list of at most {MAX_CHANNEL_GRANTS}")
    grants = []
    for grant in value:
        if not isinstance(grant, str):
            raise _invalid("channels must hold channel names")
        grant = rules.PRIVATE_MARK + grant.removeprefix(rules.PRIVATE_MARK)
        prefix = grant.endswith("*")
        body = grant[:-1] if prefix else grant
        try:
            if body != rules.PRIVATE_MARK or not prefix:
                body = rules.channel_name(body)
        except ChatError as error:
            raise _invalid(f"channels: {error.message}") from None
        grants.append(body + "*" if prefix else body)
    return tuple(grants)


def same_key(given, key):
    """Whether two keys (the operator API's, the Admin UI's password) are
    equal, in a time that tells nothing of either: their digests, of one
    length whatever the keys', are compared in constant time."""
    digest = hashlib.sha256
    # "surrogatepass": text decoded from JSON may hold lone surrogates.
    return hmac.compare_digest(
        digest(given.encode("utf-8", "surrogatepass")).digest(),
        digest(key.encode()).digest(),
    )
