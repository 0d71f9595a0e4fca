"""One exception family for everything bertconvert refuses to do.

Every error a user can cause (bad input, bad files, failed downloads, numerical mismatch)
is a subclass of :class:`BertConvertError`, so callers can catch one class and the CLI can
turn it into a one-line message and a non-zero exit code. Messages follow one pattern:
what happened, what was expected, and what to do about it.
"""
import contextlib
import contextvars

#: True while the command line runs the library: messages then name CLI flags
#: (``--overwrite``) instead of Python keywords (``overwrite=True``). See :func:`option`.
_CLI_SPELLING = contextvars.ContextVar("bertconvert_cli_spelling", default=False)


def option(flag, keyword):
    """How a message names an option: ``flag`` (``"--overwrite"``) when the CLI is running,
    ``keyword`` (``"overwrite=True"``) for Python callers. Library messages build their
    hints with this, so each audience reads the spelling it can type."""
    return flag if _CLI_SPELLING.get() else keyword


@contextlib.contextmanager
def cli_spelling():
    """Within this block, :func:`option` names CLI flags (used by :func:`bertconvert.cli.main`)."""
    token = _CLI_SPELLING.set(True)
    try:
        yield
    finally:
        _CLI_SPELLING.reset(token)


class BertConvertError(Exception):
    """Base class of every error raised on purpose by bertconvert."""

    #: Exit status the CLI uses when this error reaches it.
    exit_code = 2


# --- configuration and model loading -------------------------------------------------
class ConfigError(BertConvertError):
    """A BERT config file is missing, unreadable, or lacks required fields."""


class AttentionHeadsError(ConfigError, ValueError):
    """``hidden_size`` is not a multiple of ``num_attention_heads``: raised where the attention
    layer is built (a ValueError, as pytorch-pretrained-bert 0.6.2's), and by the checks of
    configs read for a conversion or a load."""


class ConfigRequiredError(ConfigError):
    """No config was given or found and the checkpoint's tensors do not determine one (a
    TF1 SavedModel whose graph does not record the head count): ``--config`` is needed."""


class WeightsError(BertConvertError):
    """A weights file or model directory does not hold what was expected."""


class OutputExistsError(BertConvertError):
    """An output path already exists and overwriting was not requested."""


class OutputNotReplaceableError(OutputExistsError):
    """An output path holds something bertconvert did not write (a directory of other files,
    a regular file, the current or home directory, a link): even ``--overwrite`` leaves it."""


class PublishConflictError(OutputExistsError):
    """An S3 output prefix holds objects with other bytes than this conversion's (another
    conversion publishing there, or an interrupted one) and no marker of this conversion;
    nothing of this run was marked published (see :mod:`bertconvert.convert.publish`)."""


class UnsafeOutputError(BertConvertError):
    """An output path is empty, or is, contains or lies inside an input file: writing it
    would destroy the input. Nothing was written or deleted."""


class MissingDependencyError(BertConvertError):
    """An optional dependency (TensorFlow, boto3, ...) is needed but not installed."""


# --- tokenizer ---------------------------------------------------------------------
class TokenizerError(BertConvertError):
    """The tokenizer cannot be built or used as asked."""


class VocabError(TokenizerError):
    """A vocabulary file is missing, empty, not UTF-8, or lacks a required token."""


class TokenizerInputError(TokenizerError, TypeError):
    """The tokenizer was given something that is not text (bytes, None, a number...)."""


class TextTypeError(TokenizerInputError, ValueError):
    """Google's ``convert_to_unicode`` (and ``FullTokenizer``) got neither str nor bytes: a
    ValueError as in Google's module, and a TypeError like the other input errors."""


class TokenizerArgumentError(TokenizerError, ValueError):
    """An option of the tokenizer (padding, max_length, return_tensors...) is invalid."""


class CasingMismatchError(TokenizerError, ValueError):
    """``do_lower_case`` contradicts the casing of a known Google checkpoint
    (``validate_case_matches_checkpoint``)."""


class UnknownTokenError(TokenizerError, KeyError):
    """A token or id is not in the vocabulary."""

    def __str__(self):  # KeyError would otherwise quote the message
        return Exception.__str__(self)


# --- training (optimizers, learning-rate schedules) ----------------------------------
class OptimizerArgumentError(BertConvertError, ValueError):
    """An optimizer or learning-rate schedule was given an invalid setting (a negative
    learning rate, a warmup fraction outside [0, 1), an unknown schedule name...). A
    ``ValueError``, as pytorch-pretrained-bert 0.6.2 raised for the same settings."""


class SparseGradientError(BertConvertError, RuntimeError):
    """An optimizer that keeps dense moment estimates was given a sparse gradient."""


# --- TensorFlow checkpoints ----------------------------------------------------------
class CheckpointError(BertConvertError):
    """A TensorFlow checkpoint cannot be found or read."""


class CheckpointNotFoundError(CheckpointError):
    """No checkpoint exists at the given path (prefix, .index file or directory)."""


class SavedModelVariablesError(CheckpointNotFoundError):
    """A SavedModel directory has no ``variables/variables`` checkpoint to read weights from."""


class AmbiguousCheckpointError(CheckpointNotFoundError):
    """A directory holds no checkpoint itself but several in its subdirectories."""


class CheckpointFormatError(CheckpointError):
    """The .index table or a protobuf inside it is malformed (bad magic, bad block...)."""


class PresetFormatError(CheckpointFormatError):
    """A KerasHub preset's file is unreadable: a ``.weights.h5`` that is not HDF5 or is
    truncated, a JSON file that is not the config it should be."""


class UnsupportedPresetError(CheckpointError):
    """A KerasHub preset of an architecture or task bertconvert does not convert (a
    ``keras_hub>GemmaBackbone``, ...)."""


class PresetFileMissingError(CheckpointNotFoundError):
    """A KerasHub preset lacks a file its JSON names (``task.weights.h5`` for a task with
    weights of its own, the vocabulary, ``model.weights.h5``)."""


class ObjectGraphTooLargeError(CheckpointFormatError):
    """A TF2 checkpoint's object graph exceeds a budget (its size, node count, paths or path
    text; see :class:`bertconvert.checkpoint.graph_paths.GraphLimits`): corrupt or hostile."""


class GraphLimitSettingError(CheckpointError, ValueError):
    """An object-graph budget set in the environment is not a positive whole number."""


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


class CheckpointWriteError(CheckpointError):
    """save_checkpoint was given something it cannot write (bad name, clashing names...)."""


# --- conversion ----------------------------------------------------------------------
class ConversionError(BertConvertError):
    """A checkpoint cannot be converted to the requested PyTorch layout."""


class MappingError(ConversionError):
    """Variables match no rule, parameters stay unfilled, or shapes disagree."""


class HeadError(ConversionError):
    """The requested head layout is unknown or does not fit the checkpoint."""


class DtypeRangeError(ConversionError):
    """A weight's value does not fit the output dtype (``--dtype float16``: beyond 65504);
    it would have been written as infinity. Nothing was published."""


class OutputWriteError(ConversionError):
    """Writing the converted output failed (disk full, I/O error); nothing was published."""


class OptimizerStateError(ConversionError):
    """A checkpoint's optimizer state (Adam slots, global_step) cannot be carried over."""


class UnsupportedOptimizerError(OptimizerStateError):
    """The checkpoint holds no AdamWeightDecay slots (``<var>/adam_m``, ``<var>/adam_v``):
    none at all, or another optimizer's (LAMB, Keras ``.OPTIMIZER_SLOT``)."""


class SlotShapeError(OptimizerStateError):
    """An optimizer slot's shape or dtype differs from its variable's."""


class SlotsMissingError(OptimizerStateError):
    """Parameters of the chosen head have no slots in the checkpoint (a head the slots do
    not cover)."""


class ScheduleError(OptimizerStateError, ValueError):
    """num_train_steps / num_warmup_steps do not fit the checkpoint's global_step (the run is
    past its end, or the numbers are not a schedule)."""


# --- cache ---------------------------------------------------------------------------
class CacheError(BertConvertError):
    """A cached fetch failed."""


class RemoteNotFoundError(CacheError):
    """The remote object does not exist or access is denied (HTTP 404/403, S3 NoSuchKey)."""


class DownloadError(CacheError):
    """The download failed after retries (connection errors, 5xx, truncated body)."""


class RedirectError(CacheError):
    """A server redirected to something the cache does not follow: another scheme than
    http(s) (``file://``, ``ftp://``, ``s3://``...), a URL without a host, a loop, or too
    many hops; nothing was fetched from the target."""


class IntegrityError(CacheError):
    """Downloaded or cached bytes do not match the expected length or checksum."""


class CorruptArchiveError(CacheError):
    """An archive is truncated or fails its own integrity check (gzip/bz2/xz/zip CRC)."""


class CacheWriteError(CacheError):
    """The cache directory could not take a download (disk full, quota, I/O error); the
    partial file was removed."""


class OfflineError(CacheError):
    """Offline mode is on (or the network failed) and nothing usable is cached."""


class UnsafeArchiveError(CacheError):
    """An archive member would escape the extraction directory or is a device file."""


class NetworkUnavailableError(OfflineError, DownloadError):
    """The network failed (after retries) and no cached copy of the URL exists to fall back on."""


class CertificateError(DownloadError):
    """The server's TLS certificate failed verification (not retried: it will not pass on
    the next try). A cached copy is still used, as for other network failures."""


class RemoteChangedError(DownloadError):
    """The remote object changed (ETag or size) between the metadata request and the download."""


class SourceChangedError(RemoteChangedError):
    """A remote checkpoint's object changed while it was being converted (HTTP 412 to a read
    pinned with ``If-Match``, or another ETag): nothing was published; run it again."""


class RangeProtocolError(DownloadError):
    """A server answered a byte-range read with other bytes than asked for (a wrong
    Content-Range or a Content-Length that does not match the body)."""


class DownloadTooLargeError(CacheError):
    """A download is, or grows, larger than the maximum download size (``max_download_size=``,
    ``BERTCONVERT_MAX_DOWNLOAD_SIZE``), or its Content-Encoding expands it beyond the allowed
    ratio; nothing was cached."""


class DownloadTimeoutError(CacheError):
    """A fetch ran past its deadline (``fetch_deadline=``, ``BERTCONVERT_FETCH_DEADLINE``) or
    stayed below the minimum transfer speed; nothing was committed (a resumable partial
    download may be kept for the next try)."""


class ArchiveTooLargeError(UnsafeArchiveError):
    """An archive would extract to more bytes than allowed (``max_extract_size=`` /
    ``BERTCONVERT_MAX_EXTRACT_SIZE``, or ``max_extract_ratio=`` /
    ``BERTCONVERT_MAX_EXTRACT_RATIO`` times its own size); nothing was extracted."""


class CacheSettingError(CacheError, ValueError):
    """A cache limit or setting (an environment variable or keyword) is not a valid value."""


class NotAnArchiveError(CacheError):
    """``extract=True`` was asked for a file that is not a .tar(.gz/.bz2/.xz)/.tgz/.zip archive."""


class UnsupportedURLError(CacheError, ValueError):
    """The string is neither an existing local path nor an http(s):// or s3:// URL."""


class PathNotFoundError(CacheError, FileNotFoundError):
    """A local path given to the cache does not exist (an EnvironmentError, as in 0.6.2)."""


class CacheEntryNotFoundError(CacheError, FileNotFoundError):
    """A cache file or its ``<key>.json`` metadata is missing (filename_to_url, cache rm...)."""


class UnknownModelError(CacheError, FileNotFoundError):
    """A model name is not a known shortcut name, an existing path, or a URL."""


# --- verification --------------------------------------------------------------------
class VerificationError(BertConvertError):
    """Parity could not be checked (bad inputs, unavailable device, ...)."""


class ParityError(VerificationError, AssertionError):
    """The PyTorch model's outputs differ from the reference beyond tolerance."""

    exit_code = 1


class HeadNotInCheckpointError(VerificationError):
    """``verify --head X`` names a head whose variables the checkpoint does not hold."""


class ModelSourceMismatchError(VerificationError):
    """The model directory was converted from another checkpoint than the one given
    (its conversion.json records a different ``.index`` sha256)."""


class TFReferenceError(VerificationError):
    """TensorFlow failed to read the checkpoint for the reference (corrupt or incomplete)."""


class ActivationError(ConversionError):
    """An unknown GELU form, or one that contradicts the config's ``hidden_act``."""
