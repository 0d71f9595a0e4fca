"""0.6.2's ``http_get`` over our cache keeps a URL's token out of what it shows: the bar's
description (logged once when no terminal draws it) is no longer the raw URL."""
import logging
import tempfile

import pytest

from bertconvert import file_utils

pytestmark = pytest.mark.usefixtures("cache_env")

TOKEN = "ghp_R4nd0mT0kenValue0123456789"


def test_http_get_shows_no_token(http_server, caplog):
    data = b"weights" * 1000
    http_server.add("/w.bin", data)
    url = f"http://{TOKEN}@127.0.0.1:{http_server.port}/w.bin"
    caplog.set_level(logging.DEBUG)
    with tempfile.TemporaryFile() as f:
        file_utils.http_get(url, f)
        f.seek(0)
        assert f.read() == data
    assert "w.bin" in caplog.text  # the fetch was logged ...
    assert TOKEN not in caplog.text  # ... without the token
