"""Fixtures of the remote-source tests: the cache tests' loopback servers (HTTP with injected
faults, moto's S3) and a counting TCP proxy in front of them (:mod:`.proxy`)."""
from ..cache.servers import (_moto_endpoint, cache_env, http_server, s3_env)  # noqa: F401
from .helpers import adam_checkpoint, counted_s3  # noqa: F401
