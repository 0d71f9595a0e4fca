"""One exception family for everything bertconvert refuses to do.

Every error a user can cause (bad input, bad files, failed downloads, numerical mismatch)
is a subclass of :class:`BertConvertError`, so callers can catch one class and the CLI can
turn it into a one-line message and a non-zero exit code. Messages follow one pattern:
what happened, what was expected, and what to do about it.
"""


class BertConvertError(Exception):
    """Base class of every error raised on purpose by bertconvert."""

    #: Exit status the CLI uses when this error reaches it.
    exit_code = 2


# --- configuration and model loading -------------------------------------------------
class ConfigError(BertConvertError):
    """A BERT config file is missing, unreadable, or lacks required fields."""


class WeightsError(BertConvertError):
    """A weights file or model directory does not hold what was expected."""


class OutputExistsError(BertConvertError):
    """An output path already exists and overwriting was not requested."""


class MissingDependencyError(BertConvertError):
    """An optional dependency (TensorFlow, boto3, ...) is needed but not installed."""


# --- tokenizer ---------------------------------------------------------------------
class TokenizerError(BertConvertError):
    """The tokenizer cannot be built or used as asked."""


class VocabError(TokenizerError):
    """A vocabulary file is missing, empty, not UTF-8, or lacks a required token."""


# --- TensorFlow checkpoints ----------------------------------------------------------
class CheckpointError(BertConvertError):
    """A TensorFlow checkpoint cannot be found or read."""


class CheckpointNotFoundError(CheckpointError):
    """No checkpoint exists at the given path (prefix, .index file or directory)."""


class CheckpointFormatError(CheckpointError):
    """The .index table or a protobuf inside it is malformed (bad magic, bad block...)."""


class ChecksumMismatchError(CheckpointError):
    """Tensor bytes or an index block do not match their stored crc32c."""


class MissingShardError(CheckpointError):
    """A .data-NNNNN-of-MMMMM shard named by the index is absent."""


class UnsupportedDtypeError(CheckpointError):
    """A tensor's dtype is not one bertconvert can read or write."""


class TensorNotFoundError(CheckpointError, KeyError):
    """The requested variable name is not in the checkpoint."""

    def __str__(self):  # KeyError would otherwise quote the message
        return Exception.__str__(self)


# --- conversion ----------------------------------------------------------------------
class ConversionError(BertConvertError):
    """A checkpoint cannot be converted to the requested PyTorch layout."""


class MappingError(ConversionError):
    """Variables match no rule, parameters stay unfilled, or shapes disagree."""


class HeadError(ConversionError):
    """The requested head layout is unknown or does not fit the checkpoint."""


# --- cache ---------------------------------------------------------------------------
class CacheError(BertConvertError):
    """A cached fetch failed."""


class RemoteNotFoundError(CacheError):
    """The remote object does not exist or access is denied (HTTP 404/403, S3 NoSuchKey)."""


class DownloadError(CacheError):
    """The download failed after retries (connection errors, 5xx, truncated body)."""


class IntegrityError(CacheError):
    """Downloaded or cached bytes do not match the expected length or checksum."""


class OfflineError(CacheError):
    """Offline mode is on (or the network failed) and nothing usable is cached."""


class UnsafeArchiveError(CacheError):
    """An archive member would escape the extraction directory or is a device file."""


# --- verification --------------------------------------------------------------------
class VerificationError(BertConvertError):
    """Parity could not be checked (bad inputs, unavailable device, ...)."""


class ParityError(VerificationError, AssertionError):
    """The PyTorch model's outputs differ from the reference beyond tolerance."""

    exit_code = 1
