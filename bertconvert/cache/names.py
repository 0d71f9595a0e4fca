"""Model names -> archive/vocab URLs, and fetching them into a usable local directory.

The seven names of pytorch-pretrained-bert 0.6.2 resolve to 0.6.2's own URLs
(``<base>/<name>.tar.gz`` and ``<base>/<name>-vocab.txt``). ``BERTCONVERT_MIRROR`` replaces
``<base>`` with an organisation's mirror — ``https://...``, ``http://...`` or
``s3://bucket/prefix`` — read at call time, so ``BertModel.from_pretrained('bert-base-uncased')``
and ``BertTokenizer.from_pretrained('bert-base-uncased')`` work offline-from-the-internet.

Example::

    $ export BERTCONVERT_MIRROR=s3://team-models/bert
    >>> resolve_model_dir("bert-base-uncased")      # fetched, verified, extracted once
    '/home/me/.cache/bertconvert/5f4c...-extracted/bert-base-uncased'
"""
import logging
import os
from urllib.parse import urlparse

from ..errors import CacheError, UnknownModelError, WeightsError
# What makes a directory a model (names from layout.py; importing them costs no torch).
from ..layout import CONFIG_NAMES, VOCAB_NAME, WEIGHTS_NAMES  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

ENV_MIRROR = "BERTCONVERT_MIRROR"
DEFAULT_BASE_URL = "https://s3.amazonaws.com/models.huggingface.co/bert"

PRETRAINED_NAMES = (
    "bert-base-uncased",
    "bert-large-uncased",
    "bert-base-cased",
    "bert-large-cased",
    "bert-base-multilingual-uncased",
    "bert-base-multilingual-cased",
    "bert-base-chinese",
)
#: name -> model archive URL (0.6.2's; :func:`model_archive_url` applies the mirror).
PRETRAINED_MODEL_ARCHIVE_MAP = {n: f"{DEFAULT_BASE_URL}/{n}.tar.gz" for n in PRETRAINED_NAMES}
#: name -> vocabulary URL (0.6.2's; :func:`vocab_url` applies the mirror).
PRETRAINED_VOCAB_ARCHIVE_MAP = {n: f"{DEFAULT_BASE_URL}/{n}-vocab.txt" for n in PRETRAINED_NAMES}
#: name -> position embeddings of the model, the longest input its tokenizer should allow
#: (0.6.2's map: ``BertTokenizer.from_pretrained`` caps ``max_len`` with it).
PRETRAINED_VOCAB_POSITIONAL_EMBEDDINGS_SIZE_MAP = dict.fromkeys(PRETRAINED_NAMES, 512)



def mirror_base():
    """The base URL names resolve under: ``$BERTCONVERT_MIRROR`` or 0.6.2's S3 location."""
    base = os.environ.get(ENV_MIRROR, "").strip()
    if not base:
        return DEFAULT_BASE_URL
    if urlparse(base).scheme.lower() not in ("http", "https", "s3"):
        from .redact import shown_url
        raise CacheError(f"{ENV_MIRROR}='{shown_url(base)}' must start with http://, https:// or s3://")
    return base.rstrip("/")


def _check_name(name):
    if name not in PRETRAINED_MODEL_ARCHIVE_MAP:
        raise UnknownModelError(f"{name!r} is not a known model name "
                                f"({', '.join(PRETRAINED_NAMES)})")


def model_archive_url(name):
    """URL of the model archive for a seed name, under the mirror if one is set."""
    _check_name(name)
    return f"{mirror_base()}/{name}.tar.gz"


def vocab_url(name):
    """URL of the vocabulary for a seed name, under the mirror if one is set."""
    _check_name(name)
    return f"{mirror_base()}/{name}-vocab.txt"


def _is_url(s):
    return urlparse(s).scheme.lower() in ("http", "https", "s3")


#: A URL whose last segment ends so names a file (an archive, weights...), not a directory.
_FILE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz", ".bin", ".json",
                  ".txt", ".safetensors", ".pt", ".pth", ".h5", ".index")


def _names_directory(url):
    """True when a URL names a model directory: it ends with ``/``, or its last segment
    does not end like a file (``s3://bucket/models/bert-tiny``)."""
    path = urlparse(url).path
    return path.endswith("/") or not path.lower().endswith(_FILE_SUFFIXES)


def _has_model_files(directory):
    names = set(os.listdir(directory))
    return any(c in names for c in CONFIG_NAMES) and any(w in names for w in WEIGHTS_NAMES)


def find_model_root(directory):
    """The directory holding config + weights: ``directory`` itself or its single subfolder.

    Archives are packed either flat or as ``name/…``; macOS tar adds ``._*``/``__MACOSX``
    entries, which are ignored. Raises WeightsError listing what was found otherwise.
    """
    if _has_model_files(directory):
        return directory
    subdirs = [e.path for e in os.scandir(directory)
               if e.is_dir() and not e.name.startswith((".", "__MACOSX"))]
    if len(subdirs) == 1 and _has_model_files(subdirs[0]):
        return subdirs[0]
    found = sorted(os.listdir(directory))
    raise WeightsError(
        f"{directory} does not hold a model: expected {' or '.join(CONFIG_NAMES)} and "
        f"{' or '.join(WEIGHTS_NAMES)} (at the top or in one subfolder); found {found}")


def resolve_model_dir(name_or_url, cache_dir=None, *, force_download=False, local_files_only=False,
                      progress=True):
    """Local directory holding a model's config and weights.

    ``name_or_url``: a seed name (``bert-base-uncased``...), the URL of a .tar.gz/.tgz/.zip
    model archive, a local archive, or a local model directory. Archives are fetched into
    the cache, verified, and extracted once (safely). Raises UnknownModelError for anything
    else, WeightsError when the archive holds no model.
    """
    from .redact import shown_url
    from .store import cached_path

    source = os.fspath(name_or_url)
    if source in PRETRAINED_MODEL_ARCHIVE_MAP:
        url = model_archive_url(source)
    elif _is_url(source) or os.path.exists(source):
        url = source
    else:
        raise UnknownModelError(
            f"{source!r} is not a known model name ({', '.join(PRETRAINED_NAMES)}), an existing "
            "path, or an http(s)/s3 URL")
    if _is_url(url) and _names_directory(url):
        # s3://bucket/prefix or https://host/dir: a model directory, file by file
        from .remotedir import as_directory_url
        root = cached_path(as_directory_url(url), cache_dir, force_download=force_download,
                           local_files_only=local_files_only, progress=progress)
        log.info("model %s resolved to %s", shown_url(source), root)
        return root
    directory = cached_path(url, cache_dir, force_download=force_download,
                            local_files_only=local_files_only, extract=True, progress=progress)
    root = find_model_root(directory)
    log.info("model %s resolved to %s", shown_url(source), root)
    return root


def resolve_vocab_file(name_or_url, cache_dir=None, *, force_download=False, local_files_only=False,
                       progress=True):
    """Local path of a vocabulary: for a seed name, a URL (of the file, or of a model
    directory: ``s3://bucket/prefix/``), a file, or a directory with vocab.txt."""
    from .redact import shown_url
    from .store import cached_path

    source = os.fspath(name_or_url)
    if source in PRETRAINED_VOCAB_ARCHIVE_MAP:
        url = vocab_url(source)
    elif os.path.isdir(source):
        path = os.path.join(source, VOCAB_NAME)
        if not os.path.isfile(path):
            raise UnknownModelError(f"directory {source} has no {VOCAB_NAME}")
        return path
    elif _is_url(source) and _names_directory(source):  # a model directory's vocab.txt
        directory = resolve_model_dir(source, cache_dir, force_download=force_download,
                                      local_files_only=local_files_only, progress=progress)
        path = os.path.join(directory, VOCAB_NAME)
        if not os.path.isfile(path):
            raise UnknownModelError(f"{shown_url(source)} has no {VOCAB_NAME}")
        return path
    elif _is_url(source) or os.path.exists(source):
        url = source
    else:
        raise UnknownModelError(
            f"{source!r} is not a known model name ({', '.join(PRETRAINED_NAMES)}), an existing "
            "vocabulary file, or an http(s)/s3 URL")
    return cached_path(url, cache_dir, force_download=force_download,
                       local_files_only=local_files_only, progress=progress)
