"""The shared weight cache: ``cached_path`` and everything behind it.

Owns ``cached_path`` and its decide-then-act flow (``store``), entries on disk -- cache
directory, keys, metadata, completeness (``entries``) --, one download up to its commit
(``download``), per-entry locks and partial markers (``locks``), listing/verifying/pruning
(``admin``), archive extraction and creation (``archives``), the pretrained model-name table
(``names``), pytorch-pretrained-bert 0.6.2's ``file_utils`` helpers (``compat``), size/time/expansion limits (``limits``), credentials kept out of messages
(``redact``), temps left by killed processes (``leftovers``); and for the transports: what a download must match (``checks``), checksums
computed while bytes arrive (``digests``), retries and progress (``retry``), the transport
interface (``transports``), HTTP(S) requests (``http``), response headers (``headers``) and
bodies (``receive``), and S3 (``s3``). May import the top-level leaves (``errors``,
``atomic``, ``directio``, ``hashing``) only.

``bertconvert.cache.cached_path``, ``url_to_filename`` and ``filename_to_url`` are public
paths; they are re-exported here and resolved lazily (PEP 562).
"""
from ..lazy import lazy_exports as _lazy_exports

#: public name -> submodule of this package that defines it
_EXPORTS = {
    **dict.fromkeys(("cached_path", "REMOTE_SCHEMES"), "store"),
    **dict.fromkeys(("url_to_filename", "filename_to_url", "default_cache_dir",
                     "resolve_cache_dir", "is_offline", "read_metadata", "entry_state",
                     "newest_cached_entry", "ENV_CACHE", "ENV_PPB_CACHE", "ENV_OFFLINE",
                     "DEFAULT_CACHE_DIR", "KEY_RE", "EXTRACTED_SUFFIX"), "entries"),
}


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)

__all__ = ["cached_path", "url_to_filename", "filename_to_url"]
