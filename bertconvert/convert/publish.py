"""``--out s3://bucket/prefix/``: publish a model directory to S3 complete or not at all, once.

S3 has no rename and no directory, so "atomic" is built from two things S3 does promise:
a single object appears whole or not at all, and ``PutObject``/``CompleteMultipartUpload``
with ``If-None-Match: *`` (create only) or ``If-Match: <etag>`` (replace only that version)
succeed for exactly one of several racing writers. The directory keeps its plain layout
(``prefix/config.json``, ``prefix/model.safetensors``, ...: ``aws s3 sync`` of it is an
ordinary model directory) and ``prefix/conversion.json`` is the **commit marker**:

* **The marker comes last.** The model is converted into a local temp directory as for a
  local ``--out``; its files are uploaded first, each with its sha256 in the object's
  metadata; ``conversion.json`` goes up only once every one of them is in place, with
  ``If-None-Match: *``. It lists each object's size, sha256 and ETag (``publication.objects``)
  and what was converted (``publication.identity``: the source's identity -- the sha256 of
  its ``.index``, config and vocabulary and its shards' sizes for local files; the ETags for
  remote ones -- and the options that shape the bytes: head, labels, dtype, format, GELU,
  pooler). Readers (:mod:`bertconvert.cache.remotedir`) take the marker's list and check
  every file they fetch against its sha256: a reader that sees ``conversion.json`` sees a
  complete model, and one that meets an object replaced under it refuses the mix.
* **Objects never overwrite another run's bytes unasked.** Each object is created with
  ``If-None-Match: *``. When it exists already (412, or seen by a HEAD first), its sha256
  metadata decides: the same bytes (a racing run of the same conversion, or what an
  interrupted run left) are adopted as they are; different bytes are a conflict
  (:class:`~bertconvert.errors.PublishConflictError`, nothing more uploaded) -- unless the
  marker shows meanwhile that the same conversion was published (then: done). So two runs
  with different options can never assemble one mixed model under a marker.
* **Two runs of the same conversion publish once.** The loser of the marker race reads the
  winner's marker; if it records the same identity, the loser reports "already published by
  another run" (success) and removes only the objects it uploaded itself that the winner's
  marker does not list. If it records another conversion, the loser fails with
  :class:`~bertconvert.errors.OutputExistsError` after the same clean-up.
* **The same conversion again is a no-op**: the source's ``.index`` (and config, vocab) are
  read and the plan made -- no data shard -- and the marker's identity compared; nothing is
  uploaded. A marker of another conversion is :class:`~bertconvert.errors.OutputExistsError`
  unless ``overwrite``.
* **``overwrite`` replaces the same way**: the old marker is deleted first (with
  ``If-Match`` its ETag, so a marker that another run has just written is not removed),
  which makes readers see "no model" rather than a mixture while objects change; each object
  is then replaced with ``If-Match`` the ETag just seen (another writer's change in between
  is a conflict), the new marker is created with ``If-None-Match: *``, and objects the old
  marker listed that the new one does not are deleted. A reader that had read the old marker
  and meets a replaced object fails its sha256 check (and may retry); readers that fetched
  the old model keep their cached copy.
* **Failures leave no marker.** An upload that fails (or a process killed mid-upload) leaves
  objects without ``conversion.json``: not a model to any reader; a rerun of the same
  conversion adopts them instead of uploading them again; another conversion needs
  ``overwrite``. They are not deleted on failure because a racing run of the same
  conversion may already have adopted them.

Every request goes through :func:`bertconvert.cache.s3.make_client` (boto3's standard
chain: credentials, ``AWS_ENDPOINT_URL_S3``, profiles); URLs in messages through
:func:`bertconvert.cache.redact.shown_url`.
"""
import json
import logging
import os
import shutil
import tempfile

from ..atomic import announce_published, interrupts_deferred, publishing_elsewhere
from ..errors import (BertConvertError, OutputExistsError, OutputWriteError,
                      PublishConflictError, RemoteNotFoundError, UnsupportedURLError, option)
from ..layout import REPORT_NAME
from .identity import conversion_identity, file_sha256, source_identity

log = logging.getLogger(__name__)

#: Files up to this size go up in one conditional PutObject; bigger ones in parts, the
#: upload completed with the condition (S3's single PUT stops at 5 GiB).
MULTIPART_THRESHOLD = 1 << 30
PART_SIZE = 64 << 20
#: A marker bigger than this is no conversion.json of ours (it lists a few hundred names).
MAX_MARKER_BYTES = 64 << 20


def is_s3_url(target):
    """True for an ``s3://`` output."""
    return isinstance(target, str) and target[:5].lower() == "s3://"


def check_output_url(target):
    """An output that is a URL must be ``s3://``: http(s) and others cannot be published to
    (and must not become a local folder named ``https:``)."""
    from ..cache.redact import shown_url

    text = os.fspath(target) if isinstance(target, (str, os.PathLike)) else None
    if isinstance(text, str) and "://" in text and not is_s3_url(text):
        raise UnsupportedURLError(
            f"cannot publish to '{shown_url(text)}': an output is a local directory or "
            "s3://bucket/prefix/ (http(s) servers are read from, not written to)")


class S3Target:
    """``s3://bucket/prefix/`` as a bucket and a key prefix ending in ``/``."""

    def __init__(self, url):
        from ..cache.redact import has_secrets, shown_url
        from ..cache.s3 import split_s3_url

        bucket, prefix = split_s3_url(url)
        if not prefix.strip("/") or has_secrets(url):
            raise UnsupportedURLError(
                f"'{shown_url(url)}' is no output prefix: expected s3://bucket/prefix/ (a "
                "folder in a bucket, credentials from the AWS configuration, not the URL)")
        self.bucket, self.prefix = bucket, prefix.rstrip("/") + "/"
        self.url = f"s3://{bucket}/{self.prefix}"
        self.shown = shown_url(self.url)

    def key(self, name):
        return self.prefix + name

    def url_of(self, name):
        return self.url + name


def _code(e):
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


def _status(e):
    return getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")


def _precondition_failed(e):
    return _code(e) in ("PreconditionFailed", "412") or _status(e) == 412


def _missing(e):
    return _code(e) in ("NoSuchKey", "404", "NotFound") or _status(e) == 404


class S3Publication:
    """One ``convert_checkpoint(..., out="s3://...")``: the no-op check (``precheck``) before
    anything is converted, then :meth:`publish` of the local directory."""

    def __init__(self, url, overwrite=False, progress=True):
        from ..cache.s3 import make_client

        self.target = S3Target(url)
        self.overwrite, self.progress = overwrite, progress
        self.client = make_client()
        self.identity = None
        self.old = None  # (marker dict, ETag) of the conversion being replaced
        self.status = None

    # -- reading --------------------------------------------------------------------------
    def read_marker(self):
        """``(marker dict or None, ETag or None)`` of ``conversion.json`` under the prefix."""
        from ..cache.s3 import _errors, _translate

        try:
            answer = self.client.get_object(Bucket=self.target.bucket,
                                            Key=self.target.key(REPORT_NAME))
        except _errors() as e:
            if _code(e) in ("NoSuchBucket", "AccessDenied", "403") or _status(e) == 403:
                raise RemoteNotFoundError(
                    f"{self.target.shown}: bucket {self.target.bucket!r} does not exist or "
                    f"access is denied ({_code(e) or _status(e)}); nothing was uploaded. Check "
                    "the bucket name, AWS_ENDPOINT_URL_S3 and your AWS credentials") from e
            if _missing(e):
                return None, None
            raise _translate(self.target.url_of(REPORT_NAME), e, "GetObject") from e
        body = answer["Body"]
        try:
            data = body.read(MAX_MARKER_BYTES + 1)
        finally:
            body.close()
        try:
            marker = json.loads(data) if len(data) <= MAX_MARKER_BYTES else None
        except ValueError:
            marker = None
        return (marker if isinstance(marker, dict) else {}), answer.get("ETag")

    def _head(self, name):
        """``(sha256 metadata, ETag)`` of an object, ``(None, None)`` when it is absent."""
        from ..cache.s3 import _errors, _translate

        try:
            meta = self.client.head_object(Bucket=self.target.bucket, Key=self.target.key(name))
        except _errors() as e:
            if _missing(e):
                return None, None
            raise _translate(self.target.url_of(name), e, "HeadObject") from e
        return meta.get("Metadata", {}).get("sha256"), meta.get("ETag")

    # -- the no-op check ------------------------------------------------------------------
    def precheck(self, report, reader, config_path, vocab_path):
        """Called with the planned report before any tensor is read: returns the report
        when this very conversion is published there already (nothing more to do), None
        when it is to be published; raises OutputExistsError for another conversion."""
        self.identity = conversion_identity(report,
                                            source_identity(reader, config_path, vocab_path))
        marker, etag = self.read_marker()
        if marker is None:
            return None
        if _identity_of(marker) == self.identity and not self.overwrite:
            self.status = "unchanged"
            report.output_dir, report.files = self.target.shown, list(marker.get("files") or [])
            report.notes.append(f"{self.target.shown} holds this conversion already; nothing "
                                "was uploaded")
            log.info("%s holds this conversion already (same source and options)",
                     self.target.shown)
            return report
        if not self.overwrite:
            raise OutputExistsError(
                f"{self.target.shown} holds another conversion ({REPORT_NAME} records another "
                f"source or other options); pass {option('--overwrite', 'overwrite=True')} to "
                "replace it, or choose another prefix")
        self.old = (marker, etag)
        return None

    # -- publishing -----------------------------------------------------------------------
    def publish(self, local_dir, report):
        """Upload ``local_dir`` (a finished model directory) under the prefix; the marker
        last. Returns the report, its ``publication`` set (``status`` "published",
        "replaced" or "already published by another run")."""
        names = sorted(n for n in os.listdir(local_dir) if n != REPORT_NAME)
        report.output_dir = self.target.shown
        if self.old is not None:
            self._remove_old_marker()
        objects, uploaded = {}, {}  # uploaded: {name: the ETag of our version}
        for name in names:
            path = os.path.join(local_dir, name)
            sha = file_sha256(path)
            try:
                etag, mine = self._put_object(name, path, sha)
            except (OutputExistsError, OutputWriteError):
                raise
            except BertConvertError as e:  # the store refused or the network failed
                raise OutputWriteError(
                    f"uploading {self.target.url_of(name)} failed ({e}); no {REPORT_NAME} "
                    f"was written, so nothing is published there. Run the conversion again: "
                    "the objects already uploaded are kept and adopted") from e
            if etag is None:  # the same conversion was published meanwhile
                return self._lost_race(report, uploaded)
            objects[name] = {"size": os.path.getsize(path), "sha256": sha, "etag": etag}
            if mine:
                uploaded[name] = etag
        report.publication = {"url": self.target.shown, "identity": self.identity,
                              "objects": objects}
        body = json.dumps(report.to_dict(), indent=2, sort_keys=False).encode() + b"\n"
        # The marker is the publication: an interrupt while it is written waits until it is
        # (or is not), and once it is, cannot undo it: the command then completes.
        with interrupts_deferred():
            committed = self._commit(body)
            if committed:
                announce_published()
        if not committed:
            return self._lost_race(report, uploaded)
        if self.old is not None:
            self._remove_unlisted(self.old[0], objects)
        self.status = "replaced" if self.old is not None else "published"
        report.publication["status"] = self.status
        log.info("published %s (%d objects, %s last)", self.target.shown, len(objects),
                 REPORT_NAME)
        return report

    def _commit(self, body):
        """Create the marker (If-None-Match: *); False when another run's is there first.

        With ``overwrite``, another conversion's marker that appeared meanwhile (a run that
        did not ask to overwrite, and could only adopt or create objects, never replace
        ours) is itself replaced: deleted while still that version, then ours created.
        """
        for _ in range(3):
            try:
                self._put(REPORT_NAME, body, {"IfNoneMatch": "*"}, None)
                return True
            except _ClientError as e:
                if not _precondition_failed(e.error):
                    raise e.translated from e.error
            if not self.overwrite:
                return False
            marker, etag = self.read_marker()
            if marker is not None and _identity_of(marker) == self.identity:
                return False
            if etag is not None:
                self._delete(REPORT_NAME, etag)
        return False

    def _put_object(self, name, path, sha):
        """Put one object unless the same bytes are there: ``(ETag, uploaded by us)``, or
        ``(None, False)`` when the marker shows this conversion published by another run."""
        for _ in range(3):
            existing, etag = self._head(name)
            if etag is not None and existing == sha:
                return etag, False  # the same bytes: a racing or an interrupted run's
            if etag is not None and not self.overwrite:
                marker, _ = self.read_marker()
                if marker is not None and _identity_of(marker) == self.identity:
                    return None, False
                why = (f"no {REPORT_NAME} marks it finished: another conversion with other "
                       "options is publishing to this prefix, or one was interrupted"
                       if marker is None else
                       f"{REPORT_NAME} now records another conversion, published meanwhile")
                raise PublishConflictError(
                    f"{self.target.url_of(name)} exists with other content and {why}; nothing "
                    f"of this run was marked published. Pass "
                    f"{option('--overwrite', 'overwrite=True')} to replace it, or choose "
                    "another prefix")
            condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
            try:
                return self._put(name, path, condition, sha), True
            except _ClientError as e:
                if not _precondition_failed(e.error):
                    raise e.translated from e.error
                log.info("%s changed while being published; looking again",
                         self.target.url_of(name))
        raise PublishConflictError(f"{self.target.url_of(name)} keeps changing: another run "
                                   "is publishing to this prefix; try again later")

    def _put(self, name, source, condition, sha):
        """One conditional upload (bytes or a file); returns the new ETag."""
        from ..cache.s3 import _errors, _translate

        url = self.target.url_of(name)
        extra = dict(condition, **({"Metadata": {"sha256": sha}} if sha else {}))
        try:
            if isinstance(source, bytes):
                answer = self.client.put_object(Bucket=self.target.bucket,
                                                Key=self.target.key(name), Body=source,
                                                ContentType="application/json", **extra)
            elif os.path.getsize(source) > MULTIPART_THRESHOLD:
                return self._multipart(name, source, extra)
            else:
                with open(source, "rb") as f:
                    answer = self.client.put_object(Bucket=self.target.bucket,
                                                    Key=self.target.key(name), Body=f, **extra)
        except _errors() as e:
            raise _ClientError(e, _translate(url, e, "PutObject")) from e
        log.debug("uploaded %s", url)
        return answer.get("ETag")

    def _multipart(self, name, path, extra):
        """A big file in parts; the condition applies when the upload is completed."""
        condition = {k: extra[k] for k in ("IfMatch", "IfNoneMatch") if k in extra}
        key, bucket = self.target.key(name), self.target.bucket
        upload = self.client.create_multipart_upload(Bucket=bucket, Key=key,
                                                     Metadata=extra.get("Metadata", {}))
        upload_id, parts = upload["UploadId"], []
        try:
            with open(path, "rb") as f:
                for number, block in enumerate(iter(lambda: f.read(PART_SIZE), b""), 1):
                    answer = self.client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                                     PartNumber=number, Body=block)
                    parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            answer = self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts}, **condition)
        except BaseException:
            try:  # nothing visible was made; do not leave the parts billed either
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception as e:  # noqa: BLE001 - the first error is the one to report
                log.debug("aborting the multipart upload of %s failed: %s", key, e)
            raise
        return answer.get("ETag")

    def _delete(self, name, etag):
        """Delete an object only while it is still ``etag`` (If-Match); without a known
        ETag, nothing is deleted."""
        from ..cache.s3 import _errors

        if not etag:
            return False
        try:
            self.client.delete_object(Bucket=self.target.bucket, Key=self.target.key(name),
                                      IfMatch=etag)
            return True
        except _errors() as e:
            if _precondition_failed(e) or _missing(e):
                return False
            log.warning("could not delete %s: %s", self.target.url_of(name), e)
            return False

    def _remove_old_marker(self):
        marker, etag = self.old
        if not self._delete(REPORT_NAME, etag):
            raise PublishConflictError(
                f"{self.target.url_of(REPORT_NAME)} changed while it was being replaced: another "
                "run is publishing to this prefix; nothing was replaced")
        log.info("%s: the old %s is removed; replacing the model", self.target.shown, REPORT_NAME)

    def _remove_unlisted(self, old_marker, objects):
        """After a replacement: delete what the old marker listed and the new one does not."""
        old_objects = (old_marker.get("publication") or {}).get("objects") or {}
        for name, entry in old_objects.items():
            if name not in objects and name != REPORT_NAME and isinstance(entry, dict) \
                    and "/" not in name:
                self._delete(name, entry.get("etag"))

    def _lost_race(self, report, uploaded):
        """Another run's marker is there: ours is not written."""
        marker, _ = self.read_marker()
        listed = ((marker or {}).get("publication") or {}).get("objects") or {}
        for name, etag in uploaded.items():
            # Ours alone (the winner's marker does not rely on them), and still our version.
            # Without a marker (a replacement under way) nothing is removed: that run may
            # have adopted them.
            if marker is not None and name not in listed:
                self._delete(name, etag)
        if marker is not None and _identity_of(marker) == self.identity:
            self.status = "already published by another run"
            report.files = list(marker.get("files") or report.files)
            report.publication = dict(marker.get("publication") or {}, status=self.status)
            report.notes.append(f"{self.target.shown} was published by another run of the same "
                                "conversion meanwhile; nothing of this run was needed")
            log.info("%s: already published by another run", self.target.shown)
            return report
        raise OutputExistsError(
            f"another run published a different conversion to {self.target.shown} meanwhile; "
            f"pass {option('--overwrite', 'overwrite=True')} to replace it")


class _ClientError(Exception):
    """A botocore error with our translation, so callers can still look at its code."""

    def __init__(self, error, translated):
        super().__init__(str(translated))
        self.error, self.translated = error, translated


def _identity_of(marker):
    return (marker.get("publication") or {}).get("identity")


def publish_converted(convert, url, *, overwrite=False, progress=True):
    """Run ``convert(local_dir, precheck)`` into a temp directory, then publish it to ``url``.

    ``convert`` is the local conversion (``convert.run``'s), which calls ``precheck(report,
    reader, config_path, vocab_path)`` once the plan is made and returns its report (the
    no-op) when precheck returns one.
    """
    publication = S3Publication(url, overwrite=overwrite, progress=progress)
    workdir = tempfile.mkdtemp(prefix="bertconvert-publish-")
    try:
        local = os.path.join(workdir, "model")
        with publishing_elsewhere():  # the local directory is not the output: the marker is
            report = convert(local, publication.precheck)
        if publication.status == "unchanged":
            report.publication = {"status": "unchanged"}
            return report
        try:
            return publication.publish(local, report)
        except OSError as e:
            raise OutputWriteError(f"reading the converted files for {publication.target.shown} "
                                   f"failed ({e}); nothing was marked published") from e
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
