"""The import path ``bertconvert.file_utils``: pytorch-pretrained-bert 0.6.2's ``file_utils``.

Its public names over bertconvert's cache (:mod:`bertconvert.cache`): ``cached_path`` and the
entry names of :mod:`bertconvert.cache.store` / :mod:`bertconvert.cache.entries`, 0.6.2's
other helpers from :mod:`bertconvert.cache.compat`, the file names from
:mod:`bertconvert.layout`. No code lives here.
"""
from .cache.compat import (PYTORCH_PRETRAINED_BERT_CACHE, get_file_extension,  # noqa: F401
                           get_from_cache, http_get, read_set_from_file, s3_etag, s3_get,
                           s3_request, split_s3_path)
from .cache.entries import filename_to_url, url_to_filename  # noqa: F401
from .cache.store import cached_path  # noqa: F401
from .layout import CONFIG_NAME  # noqa: F401
from .layout import PYTORCH_NAME as WEIGHTS_NAME  # noqa: F401
