"""Where a conversion's checkpoint comes from: local files, a remote prefix, or an archive URL.

:func:`open_source` is the one door ``convert`` goes through: a local path opens as always
(:func:`~bertconvert.checkpoint.load_checkpoint`); an ``s3://`` / ``http(s)://`` checkpoint is
read in place -- the ``.index`` whole, then only the byte ranges of the planned tensors
(:mod:`bertconvert.cache.remote_checkpoint`), with ``bert_config.json`` and ``vocab.txt``
from beside it (or ``--config`` / ``--vocab``, local or remote) through the shared cache; an
archive URL (a release ``.zip``, a ``.tar.gz``) is fetched and extracted once by the shared
cache and converted from there. The rest of the conversion is the same straight line:
source -> plan -> tensors -> writer.
"""
import contextlib
import logging
import tempfile

from ..checkpoint import load_checkpoint

log = logging.getLogger(__name__)


def is_remote(checkpoint):
    """True when ``checkpoint`` is a URL (``scheme://...``), not a local path."""
    from ..cache.remote_checkpoint import is_url

    return is_url(checkpoint)


@contextlib.contextmanager
def open_source(checkpoint, config=None, vocab=None, ranges=None):
    """``(reader, config, vocab)`` for ``checkpoint``, a local path or a URL; ``config`` and
    ``vocab`` are the ones to use (remote ones, and those found beside a remote prefix,
    fetched into the shared cache). ``ranges``: settings of the remote range reader
    (``connections``, ``budget_bytes``, ``part_bytes``)."""
    from ..cache.remote_checkpoint import (check_url, is_archive_url, is_url, side_files,
                                           through_transport)

    checkpoint, config, vocab = (through_transport(v) for v in (checkpoint, config, vocab))
    if not is_url(checkpoint):
        config, vocab = _local_sides(config, vocab)
        with load_checkpoint(checkpoint, mmap=False) as reader:
            yield reader, config, vocab
        return
    check_url(checkpoint)
    if is_archive_url(checkpoint):
        from ..cache.store import cached_path

        directory = cached_path(checkpoint, extract=True)
        from ..cache.redact import shown_url

        log.info("%s extracted into %s", shown_url(checkpoint), directory)
        config, vocab = _local_sides(config, vocab)
        with load_checkpoint(directory, mmap=False) as reader:
            yield reader, config, vocab
        return
    from ..cache.remote_checkpoint import open_remote_checkpoint

    with open_remote_checkpoint(checkpoint, ranges) as reader, \
            tempfile.TemporaryDirectory(prefix="bertconvert-source-") as sides:
        config, vocab = side_files(reader.store, sides, config, vocab)
        yield reader, config, vocab
        log.info("read %d bytes from %s", reader.store.bytes_received, reader.prefix)


def _local_sides(config, vocab):
    """Remote ``--config`` / ``--vocab`` beside a local checkpoint: fetched into the cache."""
    from ..cache.remote_checkpoint import check_url, is_url

    def local(value):
        if not is_url(value):
            return value
        from ..cache.store import cached_path

        check_url(value)
        return cached_path(value, progress=False)

    return local(config), local(vocab)
