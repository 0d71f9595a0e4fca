"""The cache's two transports behind one interface: ``head``, ``fetch``, ``download_checks``.

:func:`transport_for` picks one by URL scheme. The transports only adapt: the wire work is in
:mod:`.http` and :mod:`.s3`; the retry policy they share is :mod:`.retry`'s.
"""
from .retry import RetryPolicy


class HttpTransport:
    """http(s):// for the cache: HEAD + resumable GET over one requests Session."""

    resumable = True

    def __init__(self, proxies):
        self.proxies = proxies
        self.policy = RetryPolicy.from_env()
        self._session = None

    @property
    def session(self):
        if self._session is None:
            from .http import make_session
            self._session = make_session(self.proxies)
        return self._session

    def head(self, url):
        from .http import head
        return head(url, self.session, self.policy)

    def download_checks(self, info):
        """Checks worth extra requests only when downloading: none over plain HTTP."""
        return []

    def fetch(self, url, info, f, hasher, progress, desc, wire_hasher=None):
        from .http import fetch
        return fetch(url, info, f, hasher, self.session, self.policy, progress=progress,
                     desc=desc, wire_hasher=wire_hasher)

    def close(self):
        if self._session is not None:
            self._session.close()

    def watch(self, watch):
        """Enforce ``watch`` (a :class:`~bertconvert.cache.limits.TransferWatch`) from now on."""
        self.policy.watch = watch


class S3Transport:
    """s3:// for the cache: HeadObject + parallel ranged download, written in order (so a
    partial is a prefix); resumed with a ranged GetObject."""

    resumable = True

    def __init__(self, proxies):
        from .s3 import make_client

        self.policy = RetryPolicy.from_env()
        self.client = make_client(proxies, self.policy)

    def head(self, url):
        from .s3 import head
        return head(url, self.client)

    def fetch(self, url, info, f, hasher, progress, desc, wire_hasher=None):
        # boto3 never decodes a Content-Encoding: what is stored is what arrives, and the
        # store's checksums apply to it (head() leaves content_encoding None).
        assert wire_hasher is None, "S3 bodies are stored as they are sent"
        from .s3 import fetch
        return fetch(url, info, f, hasher, self.client, progress=progress, desc=desc,
                     attempts=self.policy.attempts, watch=self.policy.watch)

    def close(self):
        pass

    def watch(self, watch):
        """Enforce ``watch`` (a :class:`~bertconvert.cache.limits.TransferWatch`) from now on."""
        self.policy.watch = watch

    def download_checks(self, info):
        """Checks worth extra requests only when downloading: the multipart ETag."""
        from .s3 import multipart_check
        return multipart_check(info, self.client)


def transport_for(url, proxies=None):
    """The transport for an http(s):// or s3:// URL."""
    return S3Transport(proxies) if url.startswith("s3://") else HttpTransport(proxies)
