"""Receiving an HTTP body: into the cache's temp file and the hashers, block by block.

Three ways in, picked per response by :func:`stream_body`:

* a plain length-delimited body is read straight from the socket, one ``bytes`` block per
  socket read, without urllib3's per-read overhead; this needs the http.client response
  urllib3 keeps (:func:`socket_reader`), and without it the next way is taken -- slower, as
  correct;
* any other body through urllib3's own reads;
* a gzip/deflate-encoded body decoded here, not by urllib3 (:data:`WIRE_DECODERS`), so that
  its expansion is bounded and checked and its bytes as sent can be hashed too.

Every block is written to the file before it is hashed or counted, so a stall loses nothing
already received; the :class:`~bertconvert.cache.limits.TransferWatch` sees every block.
"""
import logging
import zlib

from ..errors import IntegrityError
from .digests import CHUNK_SIZE
from .headers import content_encoding
from .redact import shown_url

log = logging.getLogger(__name__)


class _ZlibDecoder:
    """Decodes a gzip (every member of it) or zlib-wrapped deflate body, block by block.

    :meth:`decode` yields pieces of at most :data:`DECODED_PIECE` bytes: a megabyte of
    compressed zeros expands a thousandfold, and must not do so in memory at once.
    """

    def __init__(self, wbits):
        self._wbits = wbits
        self._z = zlib.decompressobj(wbits)

    def decode(self, data):
        while data:
            out = self._z.decompress(data, DECODED_PIECE)
            if out:
                yield out
            if self._z.eof:
                data = self._z.unused_data  # a further gzip member follows, or nothing
                if data:
                    self._z = zlib.decompressobj(self._wbits)
            else:
                data = self._z.unconsumed_tail

    def finish(self):
        """The last bytes; raises zlib.error when the stream stopped short of its end."""
        tail = self._z.flush()
        if not self._z.eof:
            raise zlib.error("the compressed stream ends early")
        return tail


#: Largest piece a content-encoded body is decoded into at once.
DECODED_PIECE = 4 << 20

#: Content-Encodings bertconvert decodes itself, so that the server's checksums can be
#: checked on the encoded bytes while the decoded file is stored.
WIRE_DECODERS = {"gzip": lambda: _ZlibDecoder(16 + zlib.MAX_WBITS),
                 "x-gzip": lambda: _ZlibDecoder(16 + zlib.MAX_WBITS),
                 "deflate": lambda: _ZlibDecoder(zlib.MAX_WBITS)}


#: Largest block one socket read gives on the direct receive path.
RECEIVE_BLOCK = 1 << 20


def socket_reader(r):
    """``(http.client response, its buffered socket reader)`` when the body can be read
    straight from the socket, else None.

    That needs a plain length-delimited body (no chunking, no content coding) and the usual
    stack: urllib3 (1.26 and 2.x alike) keeps the http.client response in ``_fp``, which
    reads from a BufferedReader ``fp``. Anything else is read through urllib3.
    """
    import http.client

    response = getattr(r.raw, "_fp", None)
    if not isinstance(response, http.client.HTTPResponse) or response.isclosed():
        return None
    reader = getattr(response, "fp", None)
    if response.chunked or not isinstance(response.length, int) or \
            not hasattr(reader, "readinto1"):
        return None
    return response, reader


def stream_body(r, f, hasher, bar, offset, wire_hasher=None, watch=None, wire_size=None):
    """Append the body to ``f`` (a :class:`~bertconvert.directio.DirectFile`, which gets bytes
    on disk within a fraction of a second when the body stalls, so a killed process leaves
    them for the next attempt) and to the hasher. ``watch`` (a
    :class:`~bertconvert.cache.limits.TransferWatch`) sees every block."""
    encoding = content_encoding(r.headers)
    encoded = encoding is not None
    if encoded and encoding in WIRE_DECODERS:
        # Decoded here, not by urllib3, so that the expansion is bounded and checked.
        return _stream_decoding(r, WIRE_DECODERS[encoding](), f, hasher, wire_hasher, bar,
                                offset, watch, wire_size)
    direct = None if encoded else socket_reader(r)
    if direct is not None:
        log.debug("receiving %s straight from the socket", shown_url(r.url))
        return _stream_from_socket(*direct, f, hasher, bar, offset, watch)
    log.debug("receiving %s through urllib3", shown_url(r.url))
    raw = r.raw
    # read1 returns what one socket read gave (up to CHUNK_SIZE): big blocks, few Python
    # iterations, and a stall loses nothing already received (read(n) would discard it).
    read = getattr(raw, "read1", None) or raw.read
    while True:
        block = read(CHUNK_SIZE, decode_content=encoded)
        if not block:
            break
        offset = _deliver(block, f, hasher, bar, offset, watch)
    return offset


def _deliver(block, f, hasher, bar, offset, watch):
    """One received block: into the file first (a stall then loses nothing received), then
    to the hashers, the progress bar and the limits. Returns the new offset."""
    f.write(block)
    hasher.update(block)
    offset += len(block)
    bar.update(len(block))
    if watch is not None:
        watch.received(offset)
    return offset


def _stream_from_socket(response, reader, f, hasher, bar, offset, watch=None):
    """The body read straight from the socket.

    ``read1`` returns what one socket read gave, as fresh ``bytes`` (the hashing workers may
    still hold earlier blocks), written to ``f`` at once, so a stall loses nothing already
    received; the hasher then sees exactly what ``f`` holds.
    """
    left = response.length
    try:
        while left:
            block = reader.read1(min(RECEIVE_BLOCK, left))
            if not block:  # the body ended early: the caller sees the short size and resumes
                left = 0
                break
            left -= len(block)
            offset = _deliver(block, f, hasher, bar, offset, watch)
    finally:
        response.length = left  # http.client's own count, for whoever reads on
    return offset


def _stream_decoding(r, decoder, f, hasher, wire_hasher, bar, offset, watch=None,
                     wire_size=None):
    """A content-encoded body: the bytes as sent go to ``wire_hasher`` (when given), the
    decoded ones to ``f`` and ``hasher``. Always from byte 0 (never resumed)."""
    sent = [0]  # bytes as sent, counted by _decoded_pieces
    try:
        for piece in _decoded_pieces(r, decoder, wire_hasher, sent):
            offset = _deliver(piece, f, hasher, bar, offset, watch)
            if watch is not None:
                watch.check_expansion(sent[0], offset)
    except zlib.error as e:
        raise IntegrityError(f"the {content_encoding(r.headers)}-encoded body of {shown_url(r.url)} "
                             f"does not decode ({e}); nothing was kept. The server's copy is "
                             "damaged, or its Content-Encoding header is wrong") from e
    if wire_size is not None and sent[0] < wire_size:
        # Every gzip member so far decoded cleanly, but the body stopped short of the length
        # the server announced: a truncation at a member boundary. Retried as a broken
        # connection is.
        raise ConnectionError(f"the encoded body ended after {sent[0]} of {wire_size} bytes")
    return offset


def _decoded_pieces(r, decoder, wire_hasher, sent):
    """Decoded blocks of the body, its last bytes included; each block as sent is hashed
    (and counted in ``sent[0]``)."""
    read = getattr(r.raw, "read1", None) or r.raw.read
    while True:
        block = read(CHUNK_SIZE, decode_content=False)
        if not block:
            break
        if wire_hasher is not None:
            wire_hasher.update(block)
        sent[0] += len(block)
        yield from decoder.decode(block)
    tail = decoder.finish()
    if tail:
        yield tail
