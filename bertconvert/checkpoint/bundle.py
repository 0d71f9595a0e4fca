"""Read TensorFlow V2 checkpoints ("tensor bundles") without TensorFlow.

A bundle is ``<prefix>.index`` (a sorted table: key "" holds the BundleHeaderProto, every
other key a tensor name with its BundleEntryProto) plus ``<prefix>.data-NNNNN-of-MMMMM``
shards holding the raw little-endian tensor bytes at the offsets the entries give.

The index is parsed once when the reader is built; asking about a name never touches the
data shards. ``get_tensor`` returns a view of the memory-mapped shard (or, with
``mmap=False``, reads straight into a fresh array) after checking the masked CRC-32C over
those same bytes: no intermediate copies (see :mod:`.shards`). The API mirrors
``tf.train.load_checkpoint``.
"""
import dataclasses
import difflib
import logging
import os
import stat
import weakref
from dataclasses import dataclass
from math import prod

import numpy as np

from ..safeio import MAX_INDEX_BYTES, file_kind, read_regular_file
from ..errors import (CheckpointError, CheckpointFormatError, CheckpointNotFoundError,
                      ChecksumMismatchError, MissingShardError, TensorNotFoundError,
                      UnsupportedDtypeError)
from . import dtypes as _dtypes
from .paths import INDEX_SUFFIX, resolve_checkpoint, shard_path
from .proto import BundleHeader, decode_entry, decode_header
from .shards import ShardFiles
from .slices import check_coverage, slice_bounds, slice_key
from .strings import decode_string_tensor
from .table import read_table

log = logging.getLogger(__name__)

#: The newest bundle format version we understand (TensorFlow's kTensorBundleVersion).
BUNDLE_VERSION = 1

#: numpy's limits on an array: at most 64 dimensions, and fewer than 2**63 bytes counting
#: the non-zero dimensions (an empty (0, 2**62) array is refused by numpy too).
MAX_RANK = 64
_MAX_ARRAY_BYTES = 1 << 63


@dataclass(frozen=True)
class BundleIndex:
    """Everything in a parsed ``.index``: the header, named entries, and hidden slice entries."""
    header: BundleHeader
    entries: dict        # name -> TensorEntry, in key order
    slice_entries: dict  # OrderedCode slice key (bytes) -> TensorEntry


def _name_of(key):
    # surrogateescape keeps any byte string round-trippable even if it is not UTF-8.
    return key.decode("utf-8", "surrogateescape")


def parse_index(data, verify_checksums=True):
    """Parse the bytes of a ``.index`` file into a :class:`BundleIndex`.

    Pure (no file access): any input gives a BundleIndex or raises CheckpointFormatError.
    """
    items = read_table(data, verify_checksums)
    if not items or items[0][0] != b"":
        raise CheckpointFormatError("the index has no header entry (empty key): not a "
                                    "TensorFlow V2 checkpoint index")
    header = decode_header(items[0][1])
    if header.endianness != 0:
        raise CheckpointFormatError(
            "the checkpoint was written on a big-endian machine; neither TensorFlow nor "
            "bertconvert reads it on a little-endian one (re-save it where it was made)")
    if header.min_consumer > BUNDLE_VERSION or BUNDLE_VERSION in header.bad_consumers:
        raise CheckpointFormatError(
            f"the checkpoint needs bundle reader version >= {header.min_consumer}; this one "
            f"is version {BUNDLE_VERSION} (written by a newer TensorFlow?)")
    if header.num_shards < 1 and len(items) > 1:
        raise CheckpointFormatError(f"the header declares {header.num_shards} data shards")
    raw = {key: decode_entry(_name_of(key), value) for key, value in items[1:]}
    hidden = set()
    for key, entry in raw.items():
        for extents in entry.slices:
            hidden.add(slice_key(key, extents))
    entries, slice_entries = {}, {}
    for key, entry in raw.items():
        if key in hidden:
            slice_entries[key] = entry
        else:
            entries[entry.name] = entry
        if not entry.slices and entry.shard_id >= header.num_shards:
            raise CheckpointFormatError(
                f"entry {entry.name!r} is in shard {entry.shard_id} but the header declares "
                f"only {header.num_shards} shard(s)")
    return BundleIndex(header, entries, slice_entries)


class CheckpointReader:
    """Read-only access to one checkpoint; build it with :func:`load_checkpoint`.

    Attributes: ``prefix`` (str), ``files`` (the .index path then every shard path the
    entries use, for provenance hashing), ``verify_checksums`` and ``mmap`` (bool; see
    :mod:`bertconvert.checkpoint.shards` for what memory-mapped arrays imply). Use as a
    context manager or call ``close()`` to release the shard files early.
    """

    def __init__(self, prefix, verify_checksums=True, mmap=True, store=None):
        self.prefix = os.fspath(prefix)
        #: Where the bytes come from when not from local files: an object with
        #: ``read_index(name)``, ``shard_size(name)`` (None: missing), ``read(entry, dtype,
        #: label, verify)`` and ``close()`` (:mod:`bertconvert.cache.remote_checkpoint`).
        self.store = store
        #: Sentences saying which checkpoint a directory gave (set by load_checkpoint).
        self.resolution_notes = []
        self.verify_checksums = bool(verify_checksums)
        self.index_path = self.prefix + INDEX_SUFFIX
        try:
            # A regular file of bounded size: a FIFO would hang the read, /dev/zero never end.
            if store is not None:
                data = store.read_index(self.index_path)
            else:
                data = read_regular_file(self.index_path, MAX_INDEX_BYTES, CheckpointFormatError,
                                         "checkpoint index")
        except FileNotFoundError as e:
            raise CheckpointNotFoundError(f"checkpoint index {self.index_path} does not "
                                          "exist; pass an existing checkpoint prefix") from e
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint index {self.index_path}: {e}") from e
        try:
            # The index is small and always checked: a wrong offset would give wrong arrays.
            index = parse_index(data)
        except CheckpointFormatError as e:
            raise type(e)(f"{self.index_path}: {e}") from e
        self.header = index.header
        num_shards = index.header.num_shards

        def located(entry):
            if entry.slices:
                return entry
            return dataclasses.replace(entry, file=shard_path(self.prefix, entry.shard_id, num_shards))

        self._entries = {name: located(e) for name, e in index.entries.items()}
        self._slice_entries = {key: located(e) for key, e in index.slice_entries.items()}
        users = {}
        for entry in list(self._entries.values()) + list(self._slice_entries.values()):
            if entry.file is not None:
                users.setdefault(entry.file, []).append(entry.name)
        missing, odd = [], []
        for path in sorted(users):
            if store is not None:
                if store.shard_size(path) is None:
                    missing.append(path)
                continue
            try:
                mode = os.stat(path).st_mode
            except OSError:
                missing.append(path)
                continue
            if not stat.S_ISREG(mode):
                odd.append(f"{path} is {file_kind(mode)}")
        if odd:
            raise CheckpointError(f"checkpoint {self.prefix}: data shard(s) that are not regular "
                                  f"files: {'; '.join(odd)}; copy the real shard files there")
        if missing:
            detail = "; ".join(f"{p} (holds {len(users[p])} tensors, e.g. {users[p][0]!r})"
                               for p in missing)
            raise MissingShardError(
                f"checkpoint {self.prefix} is missing data shard(s): {detail}. "
                f"{'Upload' if store is not None else 'Copy'} every "
                f"{os.path.basename(self.prefix)}.data-*-of-{num_shards:05d} file next to "
                "the .index file.")
        self.files = [self.index_path] + sorted(users)
        self.mmap = bool(mmap)
        self._shards = store if store is not None else ShardFiles(use_mmap=self.mmap)
        self._finalizer = weakref.finalize(self, self._shards.close)
        log.debug("opened checkpoint %s: %d tensors in %d shard(s)", self.prefix,
                  len(self._entries), num_shards)

    # -- metadata (never touches the data shards) ---------------------------------------
    def entry(self, name):
        """The :class:`~bertconvert.checkpoint.proto.TensorEntry` (dtype, shape, shard_id,
        offset, size, crc32c, slices, file) of ``name``."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._entries), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise TensorNotFoundError(
                f"tensor {name!r} is not in checkpoint {self.prefix} "
                f"({len(self._entries)} tensors){hint}") from None

    def referenced_bytes(self):
        """``{shard path: end}``: how far into each data shard the index's entries reach
        (the largest offset + size). TensorFlow writes shards back to back, so a shard
        much longer than this holds bytes that no tensor is made of."""
        ends = {}
        for entry in list(self._entries.values()) + list(self._slice_entries.values()):
            if entry.file is not None and not entry.slices:
                ends[entry.file] = max(ends.get(entry.file, 0), entry.offset + entry.size)
        return ends

    def has_tensor(self, name):
        """True when ``name`` is a variable of this checkpoint."""
        return name in self._entries

    def get_variable_to_shape_map(self):
        """``{name: [dims]}`` for every variable (like TensorFlow's reader)."""
        return {name: list(e.shape) for name, e in self._entries.items()}

    def get_variable_to_dtype_map(self):
        """``{name: numpy dtype}``; string tensors map to ``object`` like in TensorFlow.

        Raises UnsupportedDtypeError if a variable has a type numpy cannot represent.
        """
        result = {}
        for name, e in self._entries.items():
            if e.dtype is None:
                raise self._unsupported(e)
            result[name] = e.dtype
        return result

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def __repr__(self):
        return f"<CheckpointReader {self.prefix!r}: {len(self._entries)} tensors>"

    # -- tensor data ---------------------------------------------------------------------
    def get_tensor(self, name):
        """One variable as a numpy array, crc-checked unless the reader was built with
        ``verify_checksums=False``: a copy-on-write view of the mapped shard, or a fresh array
        when built with ``mmap=False``. Partitioned variables come back assembled.

        String tensors (``DT_STRING``) come back as TensorFlow returns them: a numpy
        ``object`` array of ``bytes``, or plain ``bytes`` for a scalar.

        Example::

            with load_checkpoint("uncased_L-12_H-768_A-12/bert_model.ckpt") as reader:
                emb = reader.get_tensor("bert/embeddings/word_embeddings")  # (30522, 768)
        """
        entry = self.entry(name)
        if entry.slices:
            return self._assemble(entry)
        value = self._read_entry(entry, repr(name))
        if entry.tf_dtype == _dtypes.DT_STRING and value.ndim == 0:
            return value[()]  # tf.train.load_checkpoint gives bytes for a string scalar
        return value

    def close(self):
        """Close the shard files (the reader reopens them if used again)."""
        self._shards.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _unsupported(self, entry):
        if entry.tf_dtype == _dtypes.DT_BFLOAT16:
            _dtypes.bfloat16_dtype()  # raises the install hint
        return UnsupportedDtypeError(
            f"tensor {entry.name!r} has dtype {entry.dtype_name}, which bertconvert cannot "
            "read; supported: float16/32/64, bfloat16, int8/16/32/64, uint8/16/32/64, bool, "
            "complex64/128")

    def check_stored(self, name):
        """Check, without reading tensor bytes, that ``name``'s declared shape is backed by
        bytes on disk: the recorded size matches dtype and shape, and the shard (every
        slice's, for a partitioned variable) is long enough. Raises CheckpointFormatError,
        ChecksumMismatchError (truncated shard) or UnsupportedDtypeError. Callers use it
        before trusting a shape for anything proportional to it (a label count)."""
        entry = self.entry(name)
        if not self._readable(entry):
            raise self._unsupported(entry)
        if entry.slices:
            self._check_parts_on_disk(name, self._slice_parts(entry))
        else:
            self._check_declared(entry, repr(name), on_disk=True)

    def _check_parts_on_disk(self, name, pieces):
        """Every slice is on disk, and together they are no larger than the shards they sit
        in (slices pointing at the same bytes must not add up to terabytes)."""
        for part, _, extents in pieces:
            self._check_declared(part, f"{name!r} (slice {list(extents)})", on_disk=True)
        total = sum(part.size for part, _, _ in pieces)
        stored = sum(self._stored_size(path) for path in {part.file for part, _, _ in pieces})
        if total > stored:
            raise CheckpointFormatError(
                f"{self.index_path}: the slices of partitioned variable {name!r} add up to "
                f"{total} bytes but their shard(s) hold only {stored}: the index is corrupt")

    def _check_declared(self, entry, label, on_disk=False):
        """The entry's shape fits numpy and matches its recorded size; with ``on_disk`` its
        shard also holds that many bytes at its offset. Only metadata is looked at, so no
        absurd shape from a hostile index is ever allocated."""
        itemsize = self._min_itemsize(entry)
        self._check_shape(entry.shape, entry.dtype_name, itemsize, label)
        expected = prod(entry.shape) * itemsize
        string = entry.tf_dtype == _dtypes.DT_STRING
        if (entry.size < expected) if string else (entry.size != expected):
            raise CheckpointFormatError(
                f"{self.index_path}: tensor {label} has {entry.size} bytes recorded but "
                f"{entry.dtype_name} {list(entry.shape)} needs {expected}: the index is corrupt")
        if on_disk:
            try:
                available = self._stored_size(entry.file)
            except OSError as e:
                raise MissingShardError(f"data shard {entry.file} (holding {label}) cannot be "
                                        f"read: {e}") from e
            if available < entry.offset + entry.size:
                raise ChecksumMismatchError(
                    f"tensor {label} needs {entry.size} bytes at offset {entry.offset} of "
                    f"{entry.file}, but the file is only {available} bytes long: the shard is "
                    "truncated; copy or download it again")

    def _stored_size(self, path):
        """A shard's size: its file's, or what the remote store said when it was opened."""
        if self.store is not None:
            size = self.store.shard_size(path)
            if size is None:
                raise FileNotFoundError(f"{path} does not exist")
            return size
        return os.stat(path).st_size

    def _check_shape(self, shape, dtype_name, itemsize, label):
        if len(shape) > MAX_RANK:
            raise CheckpointFormatError(
                f"{self.index_path}: tensor {label} has {len(shape)} dimensions; at most "
                f"{MAX_RANK} can be read: the index is corrupt")
        if prod(d for d in shape if d) * itemsize >= _MAX_ARRAY_BYTES:
            raise CheckpointFormatError(
                f"{self.index_path}: tensor {label} declares shape {list(shape)} ({dtype_name}), "
                "larger than any array can be: the index is corrupt")

    def _read_entry(self, entry, label):
        if not self._readable(entry):
            raise self._unsupported(entry)
        self._check_declared(entry, label)
        if entry.tf_dtype == _dtypes.DT_STRING:
            return self._read_strings(entry, label)
        return self._shards.read(entry, entry.dtype, label, self.verify_checksums)

    def _read_strings(self, entry, label):
        """A string tensor as an object array of ``bytes`` (see :mod:`.strings`)."""
        # The stored checksum is not over the raw bytes (see .strings), so the shard layer
        # only bounds-checks the read and the string decoder checks both checksums.
        raw = self._shards.read(dataclasses.replace(entry, shape=(entry.size,)),
                                np.dtype(np.uint8), label, verify=False)
        count = prod(entry.shape)
        values = decode_string_tensor(raw, count, entry.crc32c if self.verify_checksums else None,
                                      f"string tensor {label} in {entry.file}")
        out = np.empty(count, dtype=object)
        out[:] = values
        return out.reshape(entry.shape)

    @staticmethod
    def _readable(entry):
        return entry.tf_dtype == _dtypes.DT_STRING or (
            entry.dtype is not None and _dtypes.is_readable(entry.tf_dtype))

    @staticmethod
    def _min_itemsize(entry):
        """Bytes per element at least: a string element takes one length byte or more."""
        return 1 if entry.tf_dtype == _dtypes.DT_STRING else entry.dtype.itemsize

    def _slice_parts(self, entry):
        """``[(stored slice entry, bounds, extents)]`` of a partitioned variable, checked to
        tile its shape exactly."""
        name = entry.name
        self._check_shape(entry.shape, entry.dtype_name, self._min_itemsize(entry), repr(name))
        bounds = [slice_bounds(extents, entry.shape, name) for extents in entry.slices]
        check_coverage(name, entry.shape, bounds)
        key_name = name.encode("utf-8", "surrogateescape")
        pieces = []
        for extents, bound in zip(entry.slices, bounds):
            part = self._slice_entries.get(slice_key(key_name, extents))
            want = tuple(stop - start for start, stop in bound)
            if part is None or part.tf_dtype != entry.tf_dtype or part.shape != want:
                raise CheckpointFormatError(
                    f"{self.index_path}: partitioned variable {name!r} lists slice {extents} "
                    f"but no matching {entry.dtype_name} {list(want)} slice is stored")
            pieces.append((part, bound, extents))
        return pieces

    def _assemble(self, entry):
        """Put a partitioned variable together from its stored slices."""
        name = entry.name
        if not self._readable(entry):
            raise self._unsupported(entry)
        pieces = self._slice_parts(entry)
        # The slices tile the variable exactly, so once each is known to be on disk the
        # whole is no bigger than the shards: only then allocate it (a hostile index could
        # declare [2**36, 32] and ask for terabytes).
        self._check_parts_on_disk(name, pieces)
        out = np.empty(entry.shape, entry.dtype)
        for part, bound, extents in pieces:
            region = tuple(slice(start, stop) for start, stop in bound)
            out[region] = self._read_entry(part, f"{name!r} (slice {list(extents)})")
        return out


def load_checkpoint(path, verify_checksums=True, mmap=True):
    """Open the checkpoint at ``path`` (a prefix, its ``.index`` file, or a directory).

    ``get_tensor`` then checks every tensor's crc32c unless ``verify_checksums=False``, and
    returns views of the memory-mapped shards unless ``mmap=False`` (private copies).

    Example::

        reader = load_checkpoint("uncased_L-12_H-768_A-12/")
        shapes = reader.get_variable_to_shape_map()
    """
    prefix, notes = resolve_checkpoint(path)
    for note in notes:
        log.info("%s", note)
    reader = CheckpointReader(prefix, verify_checksums=verify_checksums, mmap=mmap)
    reader.resolution_notes = notes  # which version / subdirectory a directory gave
    return reader


def list_variables(path):
    """Sorted ``[(name, [dims])]`` of the checkpoint at ``path``, like ``tf.train.list_variables``."""
    with load_checkpoint(path) as reader:
        return sorted(reader.get_variable_to_shape_map().items())


def load_variable(path, name):
    """One variable of the checkpoint at ``path`` as a numpy array (``tf.train.load_variable``)."""
    if name.endswith(":0"):  # TensorFlow accepts tensor names too
        name = name[:-2]
    with load_checkpoint(path) as reader:
        return reader.get_tensor(name)
