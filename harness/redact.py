"""Keep credentials out of every output: records, reports, logs and error messages.

Why: libvirt URIs can carry a password (``qemu+tcp://user:pw@lab1/system``)
or secrets in query parameters, and lab runs print and store URIs
everywhere.  Anything that writes a URI passes it through :func:`redact_uri`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|cred|auth", re.IGNORECASE)


def redact_uri(uri: str) -> str:
    """``uri`` with any password and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = [(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="/:*")
    # urlunsplit would drop the empty authority of qemu:///system; join by hand.
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else urlunsplit(("", netloc, parts.path, "", ""))
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def redact_text(text: str, uris: list[str]) -> str:
    """Replace each of ``uris`` appearing in ``text`` by its redacted form (for error messages)."""
    for uri in uris:
        if uri:
            text = text.replace(uri, redact_uri(uri))
    return text
