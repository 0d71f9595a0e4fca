"""The shared weight cache: ``cached_path`` and everything behind it.

Owns the store (cache keys, entries, ``cached_path``: ``store``), per-entry locks and partial
markers (``locks``), listing/verifying/pruning (``admin``), archive extraction and creation
(``archives``), the pretrained model-name table (``names``), integrity checks and transfer
plumbing shared by both transports (``checks``), and the HTTP(S) and S3 transports (``http``,
``s3``). May import the top-level leaves (``errors``, ``atomic``, ``directio``) only.

``bertconvert.cache.cached_path``, ``url_to_filename`` and ``filename_to_url`` are public
paths; they are re-exported here and resolved lazily (PEP 562).
"""
import importlib

#: public name -> submodule of this package that defines it
_EXPORTS = dict.fromkeys(
    ("cached_path", "url_to_filename", "filename_to_url", "default_cache_dir",
     "resolve_cache_dir", "is_offline", "read_metadata", "entry_state", "newest_cached_entry",
     "ENV_CACHE", "ENV_PPB_CACHE", "ENV_OFFLINE", "DEFAULT_CACHE_DIR", "KEY_RE",
     "EXTRACTED_SUFFIX", "REMOTE_SCHEMES"),
    "store")


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = ["cached_path", "url_to_filename", "filename_to_url"]
