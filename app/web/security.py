"""The browser's side of safety: writes only from the chat's own origin, and
headers that keep its pages from being framed, sniffed or injected into.

Cross-origin writes are refused the way Go's net/http CrossOriginProtection
and Django's CSRF origin check decide them, from what browsers themselves
say about a request (Sec-Fetch-Site, else Origin); the chat has no cookies or
sessions, so there is no token to check. Clients that are not browsers
(curl, scripts, `flask chat post`) send neither header and are not affected.
"""

from urllib.parse import urlsplit

from flask import current_app, request

from app.chat.errors import ChatError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site of a request made by a page of this origin, or by the person
# (typing the URL, a bookmark). "same-site" is another origin too: a sibling
# subdomain, or another port of this host.
OWN_SITES = frozenset({"same-origin", "none"})
JSON_MIMETYPE = "application/json"
DEFAULT_PORTS = {"http": "80", "https": "443"}
# Production's SECRET_KEY is at least this long (create_app checks it).
MIN_SECRET_KEY_LENGTH = 32


def init_app(app):
    """Guard the API's writes and add the security headers to every answer."""
    app.extensions["chat_security_headers"] = security_headers(
        app.config["CHAT_FRAME_ANCESTORS"], app.config["CHAT_TOKEN_URL"]
    )
    app.before_request(guard_api_writes)
    app.after_request(add_security_headers)


def guard_api_writes():
    """Every write to /api/ comes from this origin (403 cross_site) and its
    body, if any, is JSON (415 unsupported_media_type); reads and unknown
    routes pass on."""
    if (
        request.method in SAFE_METHODS
        or request.url_rule is None  # Flask answers 404 or 405 next
        or not request.path.startswith("/api/")
    ):
        return
    require_same_origin()
    # Browsers send text/plain, form and multipart bodies to other origins
    # without asking; a JSON content type needs a CORS preflight they fail.
    # A write without a body (DELETE, the operator's disconnect) has none.
    has_body = request.mimetype or request.content_length
    if has_body and request.mimetype != JSON_MIMETYPE:
        raise ChatError(
            "unsupported_media_type",
            "send the body as JSON, with Content-Type: application/json",
            status=415,
        )


def require_same_origin():
    """Refuse (ChatError cross_site, 403) a request that a browser sent
    from a page of another origin; see `from_other_origin`."""
    if from_other_origin():
        raise ChatError(
            "cross_site",
            "writes are accepted only from this chat's own pages",
            status=403,
        )


def from_other_origin():
    """Whether a browser sent the current request from another origin.

    1. An Origin listed in CORS_ALLOWED_ORIGINS (or any, with `*`) is
       trusted: the origins that may open Socket.IO connections may write.
    2. Sec-Fetch-Site, which every current browser sends: `same-origin` and
       `none` pass, anything else (`cross-site`, `same-site`) is refused.
    3. Without it (older browsers; no browser sends it over plain HTTP to
       hosts other than localhost), the Origin header must be this
       server's own scheme://host[:port], as Socket.IO's own check sees it.
    4. Neither header: curl, scripts, `flask chat post` pass. So does, over
       plain HTTP to a host other than localhost, a browser's image or link
       GET of /websocket_handler (browsers send neither there): serve the
       chat over HTTPS, where every browser request says where it is from.
    """
    origin = request.headers.get("Origin", "")
    trusted = current_app.config["CORS_ALLOWED_ORIGINS"]
    if origin and (trusted == "*" or origin in (trusted or ())):
        return False
    site = request.headers.get("Sec-Fetch-Site", "")
    if site:
        return site not in OWN_SITES
    if not origin:
        return False
    return _normal(origin) not in own_origins()


def own_origins():
    """This server's origins as the browser names them: scheme://host[:port]
    of the request, and the one a proxy in front reports (X-Forwarded-Proto
    and -Host), as Engine.IO's same-origin check takes them. A browser
    cannot set those headers on a cross-origin request, so trusting them
    lets nothing in that it could misuse."""
    origins = {_normal(f"{request.scheme}://{request.host}")}
    forwarded_proto = request.headers.get("X-Forwarded-Proto")
    forwarded_host = request.headers.get("X-Forwarded-Host")
    if forwarded_proto or forwarded_host:
        scheme = (forwarded_proto or request.scheme).split(",")[0].strip()
        host = (forwarded_host or request.host).split(",")[0].strip()
        origins.add(_normal(f"{scheme}://{host}"))
    return origins


def _normal(origin):
    """An origin lower-cased and without its scheme's default port, as
    browsers serialise it."""
    origin = origin.strip().lower()
    scheme, _, host = origin.partition("://")
    default = DEFAULT_PORTS.get(scheme)
    if default and host.endswith(":" + default):
        host = host[: -len(default) - 1]
    return f"{scheme}://{host}"


def security_headers(frame_ancestors, token_url=None):
    """The headers every answer carries, for CHAT_FRAME_ANCESTORS (a CSP
    frame-ancestors source list, "'none'" by default) and CHAT_TOKEN_URL
    (which the page may fetch its token from)."""
    frame_ancestors = _checked_frame_ancestors(frame_ancestors)
    token_origin = _token_origin(token_url)
    policy = [
        "default-src 'self'",
        # The page's scripts and styles are files of this server; no inline
        # code, no eval, no other host.
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        # 'self' covers the WebSocket to this host (CSP Level 3). A browser
        # that predates that stays on Socket.IO's long-polling, which works.
        f"connect-src 'self'{token_origin}",
        "base-uri 'self'",
        "form-action 'self'",
        f"frame-ancestors {frame_ancestors}",
    ]
    headers = {
        "Content-Security-Policy": "; ".join(policy),
        "X-Content-Type-Options": "nosniff",
        # The chat links nowhere else: other sites learn nothing of it, not
        # even its host (an intranet name, say).
        "Referrer-Policy": "same-origin",
    }
    # For browsers without frame-ancestors; it cannot list other origins.
    legacy = {"'none'": "DENY", "'self'": "SAMEORIGIN"}.get(frame_ancestors)
    if legacy:
        headers["X-Frame-Options"] = legacy
    return headers


def _token_origin(token_url):
    """` <origin>` of a CHAT_TOKEN_URL on another host, for connect-src; ""
    for a path on this one. Refuses anything else."""
    if token_url is None:
        return ""
    parts = urlsplit(token_url)
    if any(char in token_url for char in " ;,\r\n'\""):
        raise RuntimeError(f"CHAT_TOKEN_URL={token_url!r} is not a URL")
    if not parts.scheme and not parts.netloc and token_url.startswith("/"):
        return ""
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RuntimeError(
            f"CHAT_TOKEN_URL={token_url!r} must be a path on this server or an"
            " http(s) URL"
        )
    return f" {parts.scheme}://{parts.netloc}"


def _checked_frame_ancestors(value):
    """CHAT_FRAME_ANCESTORS with its spaces tidied; refuses a value that is
    empty, would end the directive, or forgot the quotes of 'none'/'self'."""
    sources = value.split()
    if not sources or any(char in value for char in ";,\r\n"):
        raise RuntimeError(
            f"CHAT_FRAME_ANCESTORS={value!r} must be a space-separated list of "
            "CSP sources, such as 'none', 'self' or https://example.com"
        )
    for source in sources:
        if source.lower() in ("none", "self"):
            raise RuntimeError(
                f"CHAT_FRAME_ANCESTORS: write '{source}' with its single quotes"
            )
    return " ".join(sources)


def add_security_headers(response):
    """Add the security headers to an answer (any a view set itself stay)."""
    for name, value in current_app.extensions["chat_security_headers"].items():
        response.headers.setdefault(name, value)
    return response
