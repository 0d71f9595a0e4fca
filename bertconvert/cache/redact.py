"""Keeping secrets in URLs out of cache metadata, listings, logs and error messages.

A URL may carry credentials: anything in its userinfo -- a password
(``https://user:pass@host/...``), or a token as the user name (``https://ghp_TOKEN@host/...``,
``https://oauth2:TOKEN@host/...``) -- or a signature/token in its query (S3 and GCS
presigned URLs: ``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``,
``X-Goog-Signature``...; Azure SAS ``sig``; ``token``, ``access_token``, ``api_key``...). The
cache key is still derived from the full URL (as pytorch-pretrained-bert 0.6.2 did, so keys
stay compatible), but whatever is written or shown gets :func:`redact_url`'s form, with each
secret replaced by ``***``: the user name as well as the password (which of the two holds the
token differs between hosts).

Messages show URLs and paths through :func:`shown_url` / :func:`printable`, which also escape
control characters: a CR, LF or NUL in a URL must not split or forge a line of output.

>>> redact_url("https://me:hunter2@host/w.bin?X-Amz-Signature=abc&v=1")
'https://***:***@host/w.bin?X-Amz-Signature=***&v=1'
>>> shown_url("http://ghp_abc123@host/a" + chr(13) + chr(10) + "b")
'http://***@host/a\\\\r\\\\nb'
"""
import re
from urllib.parse import unquote, urlsplit

MASK = "***"

#: Query parameters whose value is a secret: exact names, and names containing these words.
_SECRET_NAMES = {"sig", "key", "apikey", "api_key", "auth", "pwd", "passwd", "awsaccesskeyid",
                 "code", "x-amz-credential", "x-goog-credential"}
_SECRET_WORDS = ("signature", "token", "secret", "password", "credential")


def _is_secret_name(name):
    name = unquote(name).strip().lower()
    return name in _SECRET_NAMES or any(word in name for word in _SECRET_WORDS)


def _split(url):
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises ValueError
    except ValueError:
        return None
    return parts


def _query_secrets(query):
    """``[(name, value)]`` of the query's secret parameters (raw, as in the URL)."""
    out = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and _is_secret_name(name):
            out.append((name, value))
    return out


def _userinfo(netloc):
    """``(user, colon, password)`` of a netloc's userinfo, or None when it has none."""
    if "@" not in netloc:
        return None
    userinfo = netloc.rpartition("@")[0]
    return userinfo.partition(":") if userinfo else None


def _masked_userinfo(user, colon, password):
    return (MASK if user else "") + colon + (MASK if password else "")


def has_secrets(url):
    """True when ``url`` holds userinfo (a user name, a password) or a secret query
    parameter."""
    return isinstance(url, str) and redact_url(url) != url


def redact_url(url):
    """``url`` with its userinfo (user name and password) and secret query values replaced by
    ``***`` (a string that is no URL is returned as it is)."""
    if not isinstance(url, str):
        return url
    parts = _split(url)
    if parts is None or not parts.scheme:
        return url
    netloc = parts.netloc
    userinfo = _userinfo(netloc)
    if userinfo is not None:
        netloc = f"{_masked_userinfo(*userinfo)}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            pairs.append(f"{name}={MASK}" if eq and value and _is_secret_name(name) else pair)
        query = "&".join(pairs)
    if netloc == parts.netloc and query == parts.query:
        return url
    out = f"{parts.scheme}://{netloc}{parts.path}"
    if query or "?" in url:
        out += f"?{query}"
    if parts.fragment:
        out += f"#{parts.fragment}"
    return out


def scrub(text, url):
    """``text`` (a message) with every secret of ``url`` in it replaced by ``***``.

    Whole URLs, ``user:password@`` (or ``token@``) and ``name=value`` query pairs are replaced
    as they occur
    (raw or percent-decoded: urllib3 quotes the request path in its own messages); a bare
    secret only when it is long enough not to be an ordinary word.
    """
    if not isinstance(text, str) or not has_secrets(url):
        return text
    text = text.replace(url, redact_url(url))
    parts = _split(url)
    if parts is None:
        return text
    secrets = []
    userinfo = _userinfo(parts.netloc)
    if userinfo is not None:
        user, colon, password = userinfo
        masked = _masked_userinfo(*userinfo) + "@"
        for u in {user, unquote(user)}:
            for p in {password, unquote(password)}:
                text = text.replace(f"{u}{colon}{p}@", masked)
        secrets += [s for s in (user, unquote(user), password, unquote(password)) if s]
    for name, value in _query_secrets(parts.query):
        for n in {name, unquote(name)}:
            for v in {value, unquote(value)}:
                text = re.sub(re.escape(f"{n}={v}"), f"{n}={MASK}", text, flags=re.IGNORECASE)
        secrets += [value, unquote(value)]
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 6:
            text = text.replace(secret, MASK)
    return text


#: Characters that must not reach a message raw: C0 and C1 controls, DEL, and the Unicode
#: line and paragraph separators (a terminal or log viewer may break lines at them).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text):
    """``text`` with control characters escaped (``\\n``, ``\\r``, ``\\x00``...), for a URL or
    path quoted in a message: one message stays one line, and no line can be forged."""
    if not isinstance(text, str):
        return text
    return _CONTROL.sub(lambda m: _NAMED.get(m.group()) or
                        (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                         else f"\\u{ord(m.group()):04x}"), text)


def has_controls(text):
    """True when ``text`` holds a character that :func:`printable` escapes."""
    return isinstance(text, str) and _CONTROL.search(text) is not None


def shown_url(url):
    """``url`` as messages and listings show it: secrets redacted, control characters escaped."""
    # Escaped first: urlsplit silently drops CR, LF and TAB, which would hide them.
    return redact_url(printable(url))
