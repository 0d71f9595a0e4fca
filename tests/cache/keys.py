"""Cache keys computed by the tests, not by the code under test (DESIGN.md, cache/entries.py):
``sha256(url)`` in hex, then ``"." + sha256(etag)`` in hex when the server gave an ETag --
pytorch-pretrained-bert 0.6.2's layout, which existing caches use."""
import hashlib


def expected_key(url, etag=None):
    """The file name a cache entry for ``url`` at version ``etag`` must have."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    if etag:
        key += "." + hashlib.sha256(etag.encode("utf-8")).hexdigest()
    return key
