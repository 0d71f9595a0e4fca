"""Fixtures shared by the cache tests: loopback HTTP(S) servers, a moto S3 server and a
private cache directory (defined in :mod:`tests.cache.servers`, which the benchmark uses too)."""
from .servers import (_moto_endpoint, cache_env, http_server, https_server, s3_calls,  # noqa: F401
                      s3_env, tls_certificate)
