"""A TCP proxy on 127.0.0.1 that counts the bytes a server sends (headers and bodies).

Put in front of a loopback server (moto's S3, the HTTP test server), it measures what the
client really pulled over the wire, whatever the client library is: the honest number
for "bytes transferred". Each accepted connection gets its own upstream connection; two
threads pump the bytes, one per direction.
"""
import socket
import threading


class CountingProxy:
    """``with CountingProxy(port) as proxy:`` -> ``proxy.port``; ``proxy.sent`` is the
    number of bytes the upstream server sent to clients so far."""

    def __init__(self, upstream_port, host="127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.sent = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self):
        return self._sock.getsockname()[1]

    def reset(self):
        with self._lock:
            self.sent = 0
            self.connections = 0

    def _accept(self):
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src, dst, count):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if count:
                    with self._lock:
                        self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._sock.close()
