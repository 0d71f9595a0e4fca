"""``prune --max-size`` counts the bytes a cache really holds. A model directory fetched from a
URL (``https://host/dir/``) is assembled from hard links to the cache's own entries: its
files were counted twice -- as the entries and again as the directory -- so a cache that fit
was pruned (its least recently used entries deleted) to fit half the size."""
import os

import pytest

from bertconvert import cached_path
from bertconvert.cache.admin import prune

pytestmark = pytest.mark.usefixtures("cache_env")

FILES = {"config.json": b'{"hidden_size": 4}', "model.safetensors": os.urandom(300_000),
         "vocab.txt": b"[PAD]\n[UNK]\n"}


def _bytes_on_disk(directory):
    """Sizes of the distinct files (inodes) under ``directory``."""
    seen = {}
    for d, _, names in os.walk(directory):
        for name in names:
            st = os.lstat(os.path.join(d, name))
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def test_a_cache_that_fits_is_not_pruned(http_server, cache_env):
    for name, data in FILES.items():
        http_server.add(f"/models/tiny/{name}", data)
    directory = cached_path(http_server.url("/models/tiny/"), progress=False)
    assert os.path.samefile(os.path.join(directory, "model.safetensors"),
                            cached_path(http_server.url("/models/tiny/model.safetensors"),
                                        progress=False))  # linked, not copied
    held = _bytes_on_disk(cache_env)
    assert prune(cache_env, max_size=held) == []
    assert sorted(os.listdir(directory)) == sorted(FILES)
