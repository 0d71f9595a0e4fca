"""Keeping secrets in URLs out of cache metadata, listings, logs and error messages.

A URL may carry credentials: a password in its userinfo (``https://user:pass@host/...``) or
a signature/token in its query (S3 and GCS presigned URLs: ``X-Amz-Signature``,
``X-Amz-Credential``, ``X-Amz-Security-Token``, ``X-Goog-Signature``...; Azure SAS ``sig``;
``token``, ``access_token``, ``api_key``...). The cache key is still derived from the full
URL (as pytorch-pretrained-bert 0.6.2 did, so keys stay compatible), but whatever is
written or shown gets :func:`redact_url`'s form, with each secret replaced by ``***``.

>>> redact_url("https://me:hunter2@host/w.bin?X-Amz-Signature=abc&v=1")
'https://me:***@host/w.bin?X-Amz-Signature=***&v=1'
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


def has_secrets(url):
    """True when ``url`` holds a password or a secret query parameter."""
    return isinstance(url, str) and redact_url(url) != url


def redact_url(url):
    """``url`` with its password and secret query values replaced by ``***`` (a string that
    is no URL is returned as it is)."""
    if not isinstance(url, str):
        return url
    parts = _split(url)
    if parts is None or not parts.scheme:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if colon and password:
            netloc = f"{user}:{MASK}@{host}"
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

    Whole URLs, ``user:password@`` and ``name=value`` query pairs are replaced as they occur
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
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        if colon and password:
            for p in {password, unquote(password)}:
                text = text.replace(f"{user}:{p}@", f"{user}:{MASK}@")
                text = text.replace(f"{unquote(user)}:{p}@", f"{unquote(user)}:{MASK}@")
            secrets += [password, unquote(password)]
    for name, value in _query_secrets(parts.query):
        for n in {name, unquote(name)}:
            for v in {value, unquote(value)}:
                text = re.sub(re.escape(f"{n}={v}"), f"{n}={MASK}", text, flags=re.IGNORECASE)
        secrets += [value, unquote(value)]
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 6:
            text = text.replace(secret, MASK)
    return text
