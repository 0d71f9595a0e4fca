"""pytorch-pretrained-bert 0.6.2's ``file_utils`` helpers, over bertconvert's cache.

The import path ``bertconvert.file_utils`` re-exports these with :func:`cached_path`,
:func:`url_to_filename` and :func:`filename_to_url`. They keep 0.6.2's signatures and
results; the work is the cache's own (resumable, checksum-verified downloads into the same
``<sha256(url)>[.<sha256(etag)>]`` entries, size and time limits, credentials kept out of
messages), so their errors are bertconvert's named ones where 0.6.2 let requests' or
botocore's through.
"""
import functools
import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

from ..errors import UnsupportedURLError
from .entries import default_cache_dir
from .redact import shown_url

#: 0.6.2's cache directory constant, a :class:`pathlib.Path` fixed at import time: the
#: cache's default directory (``$BERTCONVERT_CACHE``, else ``$PYTORCH_PRETRAINED_BERT_CACHE``,
#: else ``~/.cache/bertconvert``), so code passing it as ``cache_dir`` uses the same entries
#: as code passing nothing.
PYTORCH_PRETRAINED_BERT_CACHE = Path(default_cache_dir())


def split_s3_path(url):
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``: one leading slash is removed
    from the key, as 0.6.2 did (``s3://b//k`` names the key ``/k``). UnsupportedURLError (a
    ValueError, as 0.6.2's) for a URL that is not s3:// or names no bucket or no object."""
    scheme = urlparse(url).scheme if isinstance(url, str) else None
    parsed = urlparse(url) if scheme == "s3" else None
    key = parsed.path[1:] if parsed is not None and parsed.path.startswith("/") else ""
    if parsed is None or not parsed.netloc or not key:
        raise UnsupportedURLError(f"bad s3 path '{shown_url(str(url))}': expected "
                                  "s3://bucket/key")
    return parsed.netloc, key


def s3_request(func):
    """Decorator for functions ``func(url, ...)`` that call S3: botocore's errors come out as
    bertconvert's -- a missing object as RemoteNotFoundError, naming the URL."""
    @functools.wraps(func)
    def wrapper(url, *args, **kwargs):
        from .s3 import _errors, _translate

        try:
            return func(url, *args, **kwargs)
        except _errors() as e:
            raise _translate(url, e, func.__name__) from e

    return wrapper


def s3_etag(url):
    """The ETag of the S3 object ``url`` (quotes included, as S3 sends it)."""
    from .transports import S3Transport

    split_s3_path(url)
    return S3Transport(None).head(url).etag


def _fetch_into(transport, url, temp_file):
    try:  # closed also when HEAD fails (a 404, a refused connection)
        info = transport.head(url)
        # The bar's description is shown (or logged where no terminal draws it): never the
        # URL's token or signature.
        transport.fetch(url, info, temp_file, hashlib.sha256(), progress=True,
                        desc=shown_url(url))
    finally:
        transport.close()


def s3_get(url, temp_file):
    """Write the S3 object ``url`` into the open binary file ``temp_file``."""
    from .transports import S3Transport

    split_s3_path(url)
    _fetch_into(S3Transport(None), url, temp_file)


def http_get(url, temp_file):
    """Write the http(s) resource ``url`` into the open binary file ``temp_file`` (with a
    progress bar, as 0.6.2). A 404 is RemoteNotFoundError, not a page written as data."""
    from .store import _check_remote_url, _scheme_of
    from .transports import HttpTransport

    scheme = _scheme_of(url)
    if scheme not in ("http", "https"):
        raise UnsupportedURLError(f"http_get needs an http:// or https:// URL, got "
                                  f"'{shown_url(url)}'")
    _check_remote_url(url, scheme)
    _fetch_into(HttpTransport(None), url, temp_file)


def get_from_cache(url, cache_dir=None):
    """The cached file of the http(s):// or s3:// ``url``, downloaded first if needed (0.6.2's
    name for :func:`~bertconvert.cache.store.cached_path` on a URL)."""
    from .store import REMOTE_SCHEMES, _scheme_of, cached_path

    if _scheme_of(url) not in REMOTE_SCHEMES:
        raise UnsupportedURLError(f"get_from_cache needs an http(s):// or s3:// URL, got "
                                  f"'{shown_url(url)}'")
    return cached_path(url, cache_dir=cache_dir)


def read_set_from_file(filename):
    """The set of lines of the UTF-8 text file ``filename``, trailing whitespace removed."""
    with open(filename, encoding="utf-8") as f:
        return {line.rstrip() for line in f}


def get_file_extension(path, dot=True, lower=True):
    """The extension of ``path`` (``".TXT"`` -> ``".txt"``): without its dot when
    ``dot=False``, as written when ``lower=False``."""
    ext = os.path.splitext(os.fspath(path))[1]
    ext = ext if dot else ext[1:]
    return ext.lower() if lower else ext
