"""Real loopback servers for the cache tests and the cache benchmark.

:class:`LoopbackServer` is a threaded HTTP/1.1 server on 127.0.0.1 that serves registered
resources with ETag, Last-Modified, HEAD and byte ``Range`` support, logs every request, and
injects the faults a weight cache must survive: a fixed error status (404, 403), N failures
with 500 before succeeding, a connection dropped mid-body, ``Range`` ignored (a 200 with the
whole body), no ETag, a weak ETag, an opaque 32-hex ETag that is no MD5 of the content, a
changed ETag (call :meth:`Resource.replace`), slow, stalling or trickling bodies, and bodies
without a Content-Length. ``flavor`` makes it answer like S3 (``x-amz-request-id``,
``x-amz-id-2``, ``Server: AmazonS3``: its plain ETags are MD5s) or like Google Cloud Storage
(``x-goog-hash: crc32c=..., md5=...``, ``x-goog-stored-*``), with ``checksum_data`` giving
checksums of other bytes (a corrupted copy). Resources backed by a file are streamed with
``os.sendfile``, so a multi-hundred-MB sparse file costs the server next to nothing (used by
the benchmark).

The pytest fixtures at the bottom (``http_server``, ``s3_env``) are imported by the test
modules; ``s3_env`` runs moto's ThreadedMotoServer on loopback and points boto3's normal
configuration chain at it through environment variables only.

Example::

    with LoopbackServer() as srv:
        res = srv.add("/model.bin", b"abc", fail_first=1)
        url = srv.url("/model.bin")
        ...
        assert srv.count("GET", "/model.bin") == 2
"""
import base64
import hashlib
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

CHUNK = 1 << 20


def _file_md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Resource:
    """One servable object and the faults to inject when serving it."""

    data: bytes = b""
    file: str = None                 # serve this file instead of ``data``
    etag: str = "md5"                # "md5" (strong, plain MD5 like S3), "weak", "opaque" (32 hex
                                     # digits that are not the MD5), None, or a literal value
    status: int = None               # always answer this status (404, 403, 500...)
    fail_first: int = 0              # the first N requests (any method) get a 500
    fail_status: int = 500
    drop_after: int = None           # GET bodies stop after this many bytes, connection closed...
    drop_times: int = 1              # ...for this many GETs
    ignore_range: bool = False       # answer Range requests with 200 and the whole body
    ignore_if_match: bool = False    # serve whatever If-Match says (else 412 on a mismatch)
    length_lie: int = 0              # GET answers announce this many bytes more than they send
    delay: float = 0.0               # seconds to sleep before each body chunk
    chunk: int = CHUNK               # body chunk size when streaming ``data``
    stall_after: int = None          # a GET crossing this byte offset sleeps ``stall`` seconds there...
    stall: float = 0.0
    stall_times: int = 1             # ...this many times in all
    stall_each: bool = False         # stall_after counts from each GET's first byte instead:
                                     # every (resumed) GET stalls after sending that many bytes
    stall_until: threading.Event = None  # stall until this is set (the test sets it once the
                                     # client has moved on) instead of for ``stall`` seconds
    head_status: int = None          # answer HEAD with this status (405: HEAD not allowed)
    replace_after_head: bytes = None  # new content (and ETag) right after the first HEAD
    headers: dict = field(default_factory=dict)  # extra response headers
    get_headers: dict = field(default_factory=dict)  # extra headers of GET answers only
    redirect_to: str = None          # answer every request with 302 to this path
    chunked: bool = False            # GET bodies with Transfer-Encoding: chunked, no length
    content_length: object = True    # False: no Content-Length (HEAD and GET); "head": on HEAD
                                     # answers only. Bodies without one end when the
                                     # connection closes (HTTP/1.0 style)
    flavor: str = None               # "s3" or "gcs": that store's response headers
    checksum_data: bytes = None      # "gcs": x-goog-hash of these bytes instead of the content
    last_modified: float = field(default_factory=time.time)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._seen = 0
        self._drops = 0
        self._stalls = 0
        self._etag_value = self._make_etag(self.etag)

    # -- content -------------------------------------------------------------------------
    @property
    def size(self):
        return os.path.getsize(self.file) if self.file else len(self.data)

    def _make_etag(self, spec):
        if spec is None:
            return None
        if spec in ("md5", "weak"):
            digest = _file_md5(self.file) if self.file else hashlib.md5(self.data).hexdigest()
            return f'"{digest}"' if spec == "md5" else f'W/"{digest}"'
        if spec == "opaque":  # looks like an MD5, is not one (a hash of the version, say)
            return '"%s"' % hashlib.md5(b"version:" + uuid.uuid4().bytes).hexdigest()
        return spec

    def flavor_headers(self):
        """The response headers of the store named by ``flavor``."""
        if self.flavor == "s3":
            return {"x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                    "x-amz-id-2": base64.b64encode(os.urandom(48)).decode(),
                    "Server": "AmazonS3"}
        if self.flavor == "gcs":
            data = self.checksum_data
            if data is None:
                data = open(self.file, "rb").read() if self.file else self.data
            hashes = ["md5=" + base64.b64encode(hashlib.md5(data).digest()).decode()]
            try:
                import google_crc32c
                crc = google_crc32c.value(bytes(data)).to_bytes(4, "big")
                hashes.insert(0, "crc32c=" + base64.b64encode(crc).decode())
            except ImportError:
                pass
            return {"x-goog-hash": ", ".join(hashes), "x-goog-generation": "1700000000000000",
                    "x-goog-metageneration": "1",
                    "x-goog-stored-content-encoding":
                        self.headers.get("Content-Encoding", "identity"),
                    "x-goog-stored-content-length": str(self.size),
                    "x-guploader-uploadid": uuid.uuid4().hex, "Server": "UploadServer"}
        if self.flavor is not None:
            raise ValueError(f"unknown flavor {self.flavor!r}")
        return {}

    @property
    def etag_header(self):
        """The ETag value sent (None when the resource has no ETag)."""
        return self._etag_value

    def replace(self, data=None, etag="md5"):
        """Change the content and/or ETag, as when a file is re-uploaded upstream."""
        if data is not None:
            self.data = data
        self.etag = etag
        self._etag_value = self._make_etag(etag)
        self.last_modified = time.time() + 1

    # -- fault bookkeeping (server threads call these) --------------------------------------
    def take_failure(self):
        with self._lock:
            self._seen += 1
            return self._seen <= self.fail_first

    def take_stall(self):
        with self._lock:
            if self._stalls >= self.stall_times:
                return False
            self._stalls += 1
            return True

    def take_drop(self):
        with self._lock:
            if self.drop_after is None or self._drops >= self.drop_times:
                return None
            self._drops += 1
            return self.drop_after


@dataclass
class RequestRecord:
    method: str
    path: str
    headers: dict
    status: int = None
    body_bytes: int = 0
    proxied_host: str = None         # set when the request came as a forward-proxy request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackTestServer/1.0"

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def version_string(self):  # the Server header: a resource may name another server
        return getattr(self, "_server_name", None) or super().version_string()

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    # ------------------------------------------------------------------------------------
    def _serve(self, head):
        self._server_name = None
        srv = self.server.owner
        target = urlsplit(self.path)  # a proxy request carries the absolute URL
        path = target.path
        record = RequestRecord(self.command, path, {k.lower(): v for k, v in self.headers.items()},
                               proxied_host=target.netloc or None)
        srv._log(record)
        res = srv.resources.get(path)
        if res is None:
            return self._error(record, 404, head)
        if res.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", res.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            record.status = 302
            return
        if res.status is not None:
            return self._error(record, res.status, head)
        if res.take_failure():
            return self._error(record, res.fail_status, head)
        if head and res.head_status is not None:
            return self._error(record, res.head_status, head)
        if_match = self.headers.get("If-Match")
        if if_match is not None and not res.ignore_if_match and if_match != "*" and \
                if_match != res.etag_header:
            return self._error(record, 412, head)  # the object changed since it was pinned

        size = res.size
        start, end, status = 0, size - 1, 200
        range_header = self.headers.get("Range")
        if range_header and not res.ignore_range and self._if_range_ok(res):
            parsed = self._parse_range(range_header, size)
            if parsed is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                record.status = 416
                return
            start, end = parsed
            status = 206
        length = max(0, end - start + 1)
        extra = {**res.flavor_headers(), **res.headers, **({} if head else res.get_headers)}
        self._server_name = extra.pop("Server", None)
        self.send_response(status)
        record.status = status
        self.send_header("Content-Type", "application/octet-stream")
        chunked = res.chunked and not head
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif res.content_length is True or (head and res.content_length == "head"):
            lie = 0 if head else res.length_lie
            self.send_header("Content-Length", str(length + lie))
            if lie:  # the promised bytes never come: the connection closes after the body
                self.close_connection = True
        else:  # the body ends when the connection closes
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", formatdate(res.last_modified, usegmt=True))
        if res.etag_header:
            self.send_header("ETag", res.etag_header)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        if head and res.replace_after_head is not None:
            # An upload lands between this HEAD and the client's GET.
            res.replace(res.replace_after_head)
            res.replace_after_head = None
        if head or length == 0:
            return
        drop = res.take_drop()
        limit = length if drop is None else min(length, max(0, drop - start))
        try:
            record.body_bytes = self._send_body(res, start, limit, chunked)
            if chunked and limit == length:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if limit < length:  # the injected drop: close without sending the rest
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _send_body(self, res, start, count, chunked=False):
        sent = 0
        # Only a GET that starts before the stall point and crosses it stalls.
        point = res.stall_after
        if point is not None and res.stall_each:
            point += start
        stalled = point is None or start >= point
        tls = self.server.owner.scheme == "https"  # sendfile would bypass the encryption
        if res.file and not res.delay and res.stall_after is None and not chunked and not tls:
            with open(res.file, "rb") as f:
                while sent < count:
                    n = os.sendfile(self.connection.fileno(), f.fileno(), start + sent, count - sent)
                    if n == 0:
                        break
                    sent += n
            return sent
        view = memoryview(res.data) if not res.file else None
        f = open(res.file, "rb") if res.file else None
        try:
            while sent < count:
                n = min(res.chunk, count - sent)
                if not stalled and start + sent + n > point:
                    n = point - start - sent
                    if n == 0:
                        stalled = True
                        if res.take_stall():
                            if res.stall_until is not None:
                                res.stall_until.wait(60)  # bounded: a broken test cannot hang
                            else:
                                time.sleep(res.stall)
                        continue
                if res.delay:
                    time.sleep(res.delay)
                if f is not None:
                    f.seek(start + sent)
                    piece = f.read(n)
                else:
                    piece = view[start + sent:start + sent + n]
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n")
                else:
                    self.wfile.write(piece)
                sent += n
        finally:
            if f is not None:
                f.close()
        return sent

    def _if_range_ok(self, res):
        cond = self.headers.get("If-Range")
        return cond is None or (res.etag_header is not None and cond == res.etag_header
                                and not cond.startswith("W/"))

    @staticmethod
    def _parse_range(value, size):
        if not value.startswith("bytes=") or "," in value:
            return None
        first, _, last = value[len("bytes="):].partition("-")
        try:
            if first == "":
                n = int(last)
                return (max(0, size - n), size - 1) if n > 0 else None
            start = int(first)
            end = int(last) if last else size - 1
        except ValueError:
            return None
        if start >= size or end < start:
            return None
        return start, min(end, size - 1)

    def _error(self, record, status, head):
        body = f"<html><body><h1>{status}</h1>error page</body></html>".encode()
        self.send_response(status)
        record.status = status
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def make_self_signed_certificate(directory):
    """``(certificate, key)`` paths of a fresh self-signed certificate for 127.0.0.1 (an EC
    key: quick to make). Clients trust it through ``REQUESTS_CA_BUNDLE``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bertconvert test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class _CountingHTTPServer(ThreadingHTTPServer):
    """Counts the connections it accepts (with TLS, before the handshake: one that fails
    the client's certificate check is counted but logs no request)."""

    def get_request(self):
        self.owner.connections += 1
        return super().get_request()

    def handle_error(self, request, client_address):
        import sys

        # A client that gives up mid-request (a limit hit, a timeout) is expected here.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 with a request log. Use as a context manager.

    ``tls=(certificate, key)`` makes it an HTTPS server (see
    :func:`make_self_signed_certificate`).
    """

    def __init__(self, tls=None):
        self.resources = {}
        self.requests = []
        self._log_lock = threading.Lock()
        self.connections = 0
        self._httpd = _CountingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        self._thread = None
        self.scheme = "http"
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"

    @property
    def port(self):
        return self._httpd.server_address[1]

    def url(self, path):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def add(self, path, data=b"", **faults):
        """Register a resource at ``path``; keyword arguments are :class:`Resource` fields."""
        res = Resource(data=data, **faults)
        self.resources[path] = res
        return res

    def _log(self, record):
        with self._log_lock:
            self.requests.append(record)

    def count(self, method=None, path=None):
        """Number of requests seen, optionally only of one method and/or path."""
        with self._log_lock:
            return sum(1 for r in self.requests
                       if (method is None or r.method == method) and (path is None or r.path == path))

    def log(self, method=None, path=None):
        with self._log_lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path == path)]

    def reset_log(self):
        with self._log_lock:
            self.requests.clear()

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --- pytest fixtures ---------------------------------------------------------------------
@pytest.fixture
def http_server():
    """A fresh :class:`LoopbackServer` per test."""
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: ``(certificate, key)`` paths."""
    pytest.importorskip("cryptography", reason="making a test certificate needs cryptography")
    return make_self_signed_certificate(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def https_server(tls_certificate, monkeypatch):
    """A fresh HTTPS :class:`LoopbackServer` whose certificate requests trusts through its
    normal configuration (``REQUESTS_CA_BUNDLE``)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_certificate[0])
    with LoopbackServer(tls=tls_certificate) as srv:
        yield srv


@pytest.fixture(scope="session")
def _moto_endpoint():
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class S3Env:
    endpoint: str
    bucket: str

    def client(self):
        import boto3
        return boto3.client("s3")

    def url(self, key):
        return f"s3://{self.bucket}/{key}"


@pytest.fixture
def s3_env(_moto_endpoint, monkeypatch, tmp_path):
    """moto's S3 on loopback, reached by boto3 through its standard configuration chain.

    Only environment variables are set (endpoint, dummy credentials, region); boto3 itself is
    untouched. Each test gets its own empty bucket.
    """
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", _moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Keep a developer's ~/.aws out of the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config-absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials-absent"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    env = S3Env(endpoint=_moto_endpoint, bucket=f"bucket-{uuid.uuid4().hex[:12]}")
    env.client().create_bucket(Bucket=env.bucket)
    return env


@pytest.fixture
def s3_calls():
    """Every S3 operation our code calls from now on, in order, as ``(operation, params)``:
    recorded through botocore's public event system on boto3's default session (clients
    made from it afterwards carry the handler); nothing is patched or faked."""
    import boto3

    boto3.setup_default_session()
    calls = []

    def record(params, event_name, **kwargs):
        calls.append((event_name.rsplit(".", 1)[-1], dict(params)))

    boto3.DEFAULT_SESSION.events.register("provide-client-params.s3", record)
    yield calls
    boto3.DEFAULT_SESSION.events.unregister("provide-client-params.s3", record)


@pytest.fixture
def cache_env(monkeypatch, tmp_path):
    """A private cache dir via BERTCONVERT_CACHE, fast retries, no mirror/offline/proxy leakage."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BERTCONVERT_CACHE", str(cache))
    monkeypatch.setenv("BERTCONVERT_HTTP_BACKOFF", "0.01")
    for var in ("BERTCONVERT_OFFLINE", "BERTCONVERT_MIRROR", "PYTORCH_PRETRAINED_BERT_CACHE",
                "BERTCONVERT_HTTP_RETRIES", "BERTCONVERT_HTTP_TIMEOUT", "BERTCONVERT_ETAG_MD5"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return cache


def cache_files(cache_dir):
    """Sorted names in a cache dir (lock files included), [] when it does not exist."""
    try:
        return sorted(os.listdir(cache_dir))
    except FileNotFoundError:
        return []


def entry_names(cache_dir):
    """Names that a reader could take for content: data files and their metadata."""
    return [n for n in cache_files(cache_dir) if not n.endswith(".lock")]
