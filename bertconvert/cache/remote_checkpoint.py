"""A checkpoint in object storage, read in place: ``s3://``, ``https://`` and ``http://``.

:func:`open_remote_checkpoint` finds the prefix (``.../model.ckpt-1000``, its ``.index`` or
a data shard, or a directory ``.../run/``: its ``checkpoint`` state file, else -- on S3,
which can list -- its one ``.index``), reads the ``.index`` whole, looks up each data
shard (HEAD: size, ETag, VersionId: the version every later read is pinned to) and
returns a :class:`~bertconvert.checkpoint.CheckpointReader` over a
:class:`RemoteShardStore`: the reader works as on local files, but tensor bytes come as
byte ranges (:mod:`bertconvert.cache.ranged`). ``bert_config.json`` and ``vocab.txt``
beside the prefix are fetched through the shared cache when present.

Names shown in messages, reports and ``conversion.json`` are the URLs with their secrets
redacted (:func:`~bertconvert.cache.redact.shown_url`); the store alone keeps the real one.
Archive URLs (``.zip``, ``.tar.gz``) are not read this way: :func:`is_archive_url` tells
the caller to fetch and extract them through :func:`~bertconvert.cache.cached_path`.
"""
import contextlib
import hashlib
import logging
import os
import re
import tempfile
from urllib.parse import urlsplit

from ..checkpoint.paths import INDEX_SUFFIX, STATE_FILE, state_file_prefix
from ..checkpoint.crc import crc32c, mask
from ..errors import (AmbiguousCheckpointError, CheckpointNotFoundError, ChecksumMismatchError,
                      ConfigError, RemoteNotFoundError, UnsupportedURLError, VocabError)
from ..layout import GOOGLE_CONFIG_NAME, VOCAB_NAME
from ..safeio import MAX_INDEX_BYTES
from .objects import objects_for
from .redact import shown_url

log = logging.getLogger(__name__)

#: The schemes a checkpoint may be read from in place.
REMOTE_SCHEMES = ("s3", "http", "https")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DATA_SUFFIX = re.compile(r"\.data-\d{5,}-of-\d{5,}$")
_ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")


def is_url(text):
    """True when ``text`` looks like ``scheme://...`` (any scheme)."""
    return isinstance(text, str) and bool(_URL.match(text))


def is_archive_url(url):
    """True when ``url``'s path names an archive (.zip, .tar.gz, .tgz, ...)."""
    return urlsplit(url).path.lower().endswith(_ARCHIVES)


#: Google Cloud Storage's anonymous HTTPS endpoint (public objects).
GCS_PUBLIC_ENDPOINT = "https://storage.googleapis.com/"


def through_transport(url):
    """``url`` as the transport that reads it: a ``gs://BUCKET/KEY`` is read through the S3
    code as ``s3://BUCKET/KEY`` when an S3 endpoint is configured (``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL``, e.g. ``https://storage.googleapis.com`` with HMAC keys as the AWS
    credentials: Cloud Storage's S3-compatible API), else anonymously over HTTPS from
    ``https://storage.googleapis.com/BUCKET/KEY`` (public buckets). Other URLs unchanged.

    >>> through_transport("s3://b/k")
    's3://b/k'
    """
    if not (isinstance(url, str) and url[:5].lower() == "gs://"):
        return url
    rest = url[5:]
    if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
        target = "s3://" + rest
    else:
        target = GCS_PUBLIC_ENDPOINT + rest
    log.info("%s is read as %s", shown_url(url), shown_url(target))
    return target


def check_url(url):
    """UnsupportedURLError unless ``url`` is an s3/http(s) URL with a host and a path."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in REMOTE_SCHEMES:
        raise UnsupportedURLError(f"{shown_url(url)}: unsupported scheme {scheme}://; a remote "
                                  "checkpoint is an s3://, https:// or http:// URL")
    parts = urlsplit(url)
    if not parts.netloc or parts.path.strip("/") == "":
        raise UnsupportedURLError(f"{shown_url(url)} names no object: give the checkpoint prefix "
                                  "(.../model.ckpt-1000) or its directory (.../run/)")
    if parts.query and scheme != "s3":
        raise UnsupportedURLError(f"{shown_url(url)}: a URL with a query (a signed URL) names one "
                                  "object; a checkpoint prefix needs its .index and data shards "
                                  "beside it under one path")


def _parent(url):
    return url[:url.rstrip("/").rfind("/") + 1]


def _from_directory(objects, directory):
    """The prefix URL of the checkpoint in ``directory`` (ends with '/')."""
    state = objects.get_small(directory + STATE_FILE, 1 << 20)
    listable = hasattr(objects, "list")
    if state is not None:
        named = state_file_prefix(state[0].decode("utf-8", "replace"))
        if named:
            base = named.replace("\\", "/").rsplit("/", 1)[-1]
            # Asked by HEAD, not looked up in a listing: reading needs s3:GetObject only,
            # and a reader may not be allowed s3:ListBucket.
            if not listable or objects.head(directory + base + INDEX_SUFFIX) is not None:
                return directory + base
    listed = folders = None
    if listable:
        listed, folders = objects.list(directory)
    if listed is None:
        raise CheckpointNotFoundError(
            f"{shown_url(directory)} has no usable '{STATE_FILE}' state file and an HTTP server "
            "cannot be listed: give the checkpoint prefix (e.g. "
            f"{shown_url(directory)}model.ckpt-1000)")
    indexes = sorted(k for k in listed if k.endswith(INDEX_SUFFIX))
    if len(indexes) == 1:
        return directory + indexes[0][:-len(INDEX_SUFFIX)]
    if not indexes:
        there = ", ".join(listed[:8] + folders[:4]) or "nothing"
        raise CheckpointNotFoundError(
            f"{shown_url(directory)} holds no checkpoint: no '{STATE_FILE}' state file and no "
            f"*{INDEX_SUFFIX} object (it holds {there})")
    raise AmbiguousCheckpointError(
        f"{shown_url(directory)} holds several checkpoints ({', '.join(indexes)}) and no usable "
        f"'{STATE_FILE}' state file; give the prefix of the one you mean")


def resolve_remote_prefix(objects, url):
    """The real prefix URL for ``url`` (a prefix, its .index, a data shard, a directory)."""
    if url.endswith("/"):
        return _from_directory(objects, url)
    stem = url[:-len(INDEX_SUFFIX)] if url.endswith(INDEX_SUFFIX) else _DATA_SUFFIX.sub("", url)
    if objects.head(stem + INDEX_SUFFIX) is not None:
        return stem
    try:
        return _from_directory(objects, url + "/")
    except AmbiguousCheckpointError:
        raise
    except CheckpointNotFoundError:
        raise CheckpointNotFoundError(
            f"no TensorFlow checkpoint at {shown_url(url)}: {shown_url(stem + INDEX_SUFFIX)} "
            "does not exist, nor a directory of that name holding one") from None


class RemoteShardStore:
    """Where a :class:`~bertconvert.checkpoint.CheckpointReader` over a remote checkpoint gets
    bytes from: the ``.index`` whole, shard sizes from HEAD, tensors as pinned byte ranges."""

    def __init__(self, objects, real_prefix, ranges=None):
        from .ranged import RangeReader

        self.objects, self.real_prefix = objects, real_prefix
        self.prefix = shown_url(real_prefix)
        self.pins = {}
        #: local copies of the config and vocabulary -> their (shown) URLs
        self.side_urls = {}
        self.ranges = RangeReader(objects, self.pins, **(ranges or {}))

    def _real(self, name):
        return self.real_prefix + name[len(self.prefix):] if name.startswith(self.prefix) else name

    def read_index(self, name):
        """The ``.index`` bytes (pinned from here on)."""
        got = self.objects.get_small(self._real(name), MAX_INDEX_BYTES)
        if got is None:
            raise CheckpointNotFoundError(f"checkpoint index {name} does not exist; give an "
                                          "existing checkpoint prefix")
        data, pin = got
        self.pins[name] = pin
        self.index_sha256 = hashlib.sha256(data).hexdigest()  # read whole anyway: as locally
        return data

    def shard_size(self, name):
        """The size of shard ``name`` (its version pinned), or None when it is missing."""
        pin = self.pins.get(name)
        if pin is None:
            pin = self.objects.head(self._real(name))
            if pin is None:
                return None
            self.pins[name] = pin
        return pin.size

    def schedule(self, entries):
        """The tensors (index entries) that will be read, in order: fetched ahead."""
        self.ranges.schedule([(e.file, e.offset, e.size) for e in entries
                              if e.file is not None and not e.slices])

    def tensor_bytes(self, entry):
        """An entry's raw bytes (uint8 array; crc not checked here)."""
        return self.ranges.read(entry.file, entry.offset, entry.size)

    def read(self, entry, dtype, label, verify):
        """The entry's tensor as an array of ``dtype``, crc-checked (the reader's shard API)."""
        raw = self.tensor_bytes(entry)
        if verify and mask(crc32c(raw)) != entry.crc32c:
            raise ChecksumMismatchError(
                f"tensor {label} in {entry.file} (offset {entry.offset}, {entry.size} bytes) "
                f"fails its crc32c check: the object is corrupt")
        return raw.view(dtype).reshape(entry.shape) if raw.size else \
            raw.view(dtype).reshape(entry.shape)

    def records(self):
        """conversion.json's ``source_files`` for the checkpoint: URL, size, ETag, VersionId."""
        records = [self.pins[name].record() for name in self.pins]
        if records:
            records[0]["sha256"] = self.index_sha256
        return records

    @property
    def bytes_received(self):
        return self.objects.received.bytes

    def close(self):
        """Stop the range reads and close the connections."""
        self.ranges.close()
        self.objects.close()


def fetch_beside(real_prefix, name):
    """``(local path, URL)`` of ``name`` beside the remote prefix, fetched through the shared
    cache; None when the store has no such object."""
    from .store import cached_path

    url = _parent(real_prefix) + name
    try:
        return cached_path(url, progress=False), url
    except RemoteNotFoundError:
        log.info("no %s beside %s", name, shown_url(real_prefix))
        return None


def open_remote_checkpoint(url, ranges=None):
    """A :class:`~bertconvert.checkpoint.CheckpointReader` over the remote checkpoint at
    ``url`` (see the module docstring); ``ranges``: RangeReader settings."""
    from ..checkpoint.bundle import CheckpointReader

    check_url(url)
    objects = objects_for(url)
    try:  # a prefix that resolves to nothing must not leave the connections open
        prefix = resolve_remote_prefix(objects, url)
        if prefix != url:
            log.info("checkpoint %s resolved to %s", shown_url(url), shown_url(prefix))
        store = RemoteShardStore(objects, prefix, ranges)
    except BaseException:
        objects.close()
        raise
    try:
        reader = CheckpointReader(store.prefix, mmap=False, store=store)
    except BaseException:
        store.close()
        raise
    if prefix.rstrip("/") != url.rstrip("/") and url.endswith("/"):
        reader.resolution_notes = [f"{shown_url(url)}: using checkpoint {store.prefix}"]
    return reader


def side_files(store, directory, config=None, vocab=None):
    """``(config, vocab)`` for a remote checkpoint: the given ones (URLs fetched through the
    cache), else ``bert_config.json`` / ``vocab.txt`` beside the remote prefix when present.
    Fetched files are copied into ``directory`` under their own names (the model directory
    gets ``bert_config.json`` as it was); ``store.side_urls`` maps each copy to its URL."""
    import os
    import shutil

    from .remotedir import is_directory_url
    from .store import cached_path

    def local(value, name):
        if value is None:
            found = fetch_beside(store.real_prefix, name)
        elif is_url(value):
            check_url(value)
            if is_directory_url(value):  # the cache would fetch a whole model directory
                error, what = (ConfigError, "config") if name == GOOGLE_CONFIG_NAME else \
                    (VocabError, "vocabulary")
                raise error(f"the {what} URL {shown_url(value)} names a directory, not a "
                            f"file; give the URL of the file itself (e.g. "
                            f"{shown_url(value)}{name})")
            found = cached_path(value, progress=False), value
        else:
            return value
        if found is None:
            return None
        copy = os.path.join(directory, name)
        shutil.copyfile(found[0], copy)
        store.side_urls[os.path.abspath(copy)] = shown_url(found[1])
        return copy

    return local(config, GOOGLE_CONFIG_NAME), local(vocab, VOCAB_NAME)


@contextlib.contextmanager
def local_checkpoint(url):
    """The local prefix of a copy of the remote checkpoint at ``url``, for TensorFlow (which
    reads files): every object -- ``.index``, data shards, ``bert_config.json`` and
    ``vocab.txt`` when present -- fetched whole through the shared cache (verified, kept for
    the next run), then linked under their own names in a temporary directory."""
    with open_remote_checkpoint(url) as reader:
        store = reader.store
        objects = {name: store._real(name) for name in reader.files}
        for name in (GOOGLE_CONFIG_NAME, VOCAB_NAME):
            objects[_parent(store.prefix) + name] = _parent(store.real_prefix) + name
    from .store import cached_path

    with tempfile.TemporaryDirectory(prefix="bertconvert-checkpoint-") as directory:
        for name, real in objects.items():
            try:
                path = cached_path(real)
            except RemoteNotFoundError:
                if name.endswith((GOOGLE_CONFIG_NAME, VOCAB_NAME)):
                    continue  # optional companions
                raise
            os.symlink(os.path.abspath(path), os.path.join(directory, name.rsplit("/", 1)[-1]))
        yield os.path.join(directory, store.prefix.rsplit("/", 1)[-1])
