"""Downloading one cache entry: temp file, checksums while the bytes arrive, the commit.

:func:`download` is the "act" half of a fetch, called by :mod:`.store` under the entry's lock
once it has decided a download is needed: claim (or adopt, to resume) a hidden temp file
beside the entry, let the transport stream the body into it and into the hashers, check
length and checksums, fsync, ``os.replace`` -- the commit point -- then write the metadata
atomically. Anything short of the commit leaves no file that looks complete: the temp file
is removed, or kept only as a resumable prefix.
"""
import contextlib
import json
import logging
import os
import time
from urllib.parse import urlparse

from ..atomic import atomic_write
from ..errors import (CacheError, CacheWriteError, DownloadError, DownloadTimeoutError,
                      RemoteChangedError)
from .checks import Expected, check_integrity
from .digests import StreamHasher
from .entries import ENV_CACHE
from .locks import _claim_partial, _release_partial
from .redact import redact_url, shown_url

log = logging.getLogger(__name__)


def _open_partial(tmp, adopted):
    """The temp file a download writes. Both transports deliver the body in order, so it is
    a DirectFile: past the page cache (the commit's fsync is cheap), always a prefix of the
    object (resumable)."""
    from ..directio import DirectFile

    return DirectFile(tmp, "a" if adopted else "x")


def _close_partial(f, keep):
    """Close an uncommitted temp file: what it holds is written out when it will be resumed,
    discarded otherwise; a write error here must not hide the error being raised."""
    if not keep:
        f.abort()
        return
    try:
        f.close()
    except OSError as e:
        log.warning("could not write the rest of the partial download %s: %s", f.name, e)


def _is_network_error(error):
    """requests' exceptions derive from OSError too; they are not the disk's fault."""
    try:
        import requests
    except ImportError:
        return False
    return isinstance(error, requests.RequestException)


def _split_for_encoding(url, info, own, server):
    """``(checks of the stored file, checks of the bytes as sent)``, from the caller's own
    checks (``sha256=``) and the server's.

    An object stored with ``Content-Encoding: gzip`` (S3 metadata) is sent encoded whatever
    the request asks; it is cached decoded, as requests and pytorch-pretrained-bert 0.6.2
    give it, while the server's checksums (ETag MD5, ``x-amz-checksum-*``) describe the
    encoded bytes and are checked on those. A ``sha256=`` argument describes the file.
    """
    from .receive import WIRE_DECODERS

    if info.content_encoding is None:
        return own + server, []
    if info.content_encoding not in WIRE_DECODERS:
        if server:
            log.warning("%s is sent with Content-Encoding: %s, which bertconvert cannot decode "
                        "itself; the server's checksums describe the encoded bytes and are not "
                        "checked", url, info.content_encoding)
        return own, []
    wire = [Expected(e.algorithm, e.hexdigest,
                     f"{e.source} (for the {info.content_encoding}-encoded bytes sent)")
            for e in server]
    return own, wire


def download(url, info, data_path, transport, sha256, progress, watch):
    from .. import __version__

    watch.check_size(info.size)  # an announced size beyond the limit: not even a temp file

    own = [Expected("sha256", sha256, "the sha256= argument")] if sha256 else []
    server = list(info.expected)
    if not server and not own:  # nothing to check the bytes against yet: what else can the
        server = transport.download_checks(info)  # store say?
    if any(e.algorithm == "sha256" for e in server + own):
        # sha256 is computed anyway and is the stronger check: skip the ETag's MD5 (the
        # slowest hash, 0.52 s per 440 MB here).
        server = [e for e in server if e.algorithm != "md5"]
    expected, wire_expected = _split_for_encoding(url, info, own, server)
    # Byte ranges of an encoded body count encoded bytes; the file holds decoded ones.
    resumable = transport.resumable and info.strong_etag is not None and \
        info.content_encoding is None
    tmp, adopted = _claim_partial(data_path, resumable)
    hasher = StreamHasher(["sha256"] + [e.algorithm for e in expected])
    wire_hasher = StreamHasher([e.algorithm for e in wire_expected]) if wire_expected else None
    try:
        if adopted:  # the kept prefix counts towards every checksum
            with open(tmp, "rb") as prefix:
                hasher.feed_file(prefix, adopted)
        f = _open_partial(tmp, adopted)
    except OSError as e:
        hasher.hexdigests()
        if wire_hasher is not None:
            wire_hasher.hexdigests()
        _release_partial(tmp)
        raise CacheError(f"cannot write to the cache directory {os.path.dirname(data_path)}: {e}; "
                         f"point {ENV_CACHE} (or cache_dir=) at a writable directory") from e
    keep_partial = False
    committed = False
    try:
        desc = os.path.basename(urlparse(url).path)[:24] or "download"
        size = transport.fetch(url, info, f, hasher, progress, desc, wire_hasher=wire_hasher)
        f.flush()
        digests = hasher.hexdigests()
        check_integrity(shown_url(url), size, digests, info.size, expected)
        wire_digests = wire_hasher.hexdigests() if wire_hasher is not None else {}
        check_integrity(shown_url(url), None, wire_digests, None, wire_expected)
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, data_path)  # the commit point
        committed = True
        # Never the URL's password or signature: the key (sha256 of the full URL) is enough.
        meta = {"url": redact_url(url), "etag": info.etag, "size": size,
                "sha256": digests["sha256"],
                # What was actually compared (a checksum whose library is missing is not).
                "verified": sorted({e.algorithm for e in expected if e.algorithm in digests} |
                                   {e.algorithm for e in wire_expected
                                    if e.algorithm in wire_digests}),
                "last_modified": info.last_modified, "created": time.time(),
                "bertconvert_version": __version__}
        if info.version_id:
            meta["version_id"] = info.version_id
        if info.content_encoding:
            meta["content_encoding"] = info.content_encoding  # the file holds the decoded body
        with atomic_write(data_path + ".json", "w") as mf:
            json.dump(meta, mf, indent=1)
        log.info("cached %s (%d bytes, sha256 %s)", shown_url(url), size, digests["sha256"])
    except (DownloadError, DownloadTimeoutError, KeyboardInterrupt) as e:
        # What arrived so far is a sound prefix: kept for the next try when it can resume.
        keep_partial = resumable and not isinstance(e, RemoteChangedError)
        raise
    except OSError as e:
        if _is_network_error(e):
            raise
        # Network errors became DownloadError inside the transport: this is the local disk.
        raise CacheWriteError(
            f"writing the download of {shown_url(url)} into {os.path.dirname(data_path)} failed: "
            f"{e.strerror or e}; the partial file was removed. Free space (or raise the quota) "
            f"there, or point {ENV_CACHE} (or cache_dir=) elsewhere, then retry") from e
    finally:
        hasher.hexdigests()  # stops the hashing threads on every path
        if wire_hasher is not None:
            wire_hasher.hexdigests()
        if not committed:
            _close_partial(f, keep=keep_partial)
        _release_partial(tmp)
        if not committed and not keep_partial:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        elif not committed:
            with contextlib.suppress(OSError):
                if os.path.getsize(tmp) == 0:
                    os.unlink(tmp)

