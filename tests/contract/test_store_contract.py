"""One contract suite for every Store. Each backend fixture yields a fresh, empty store.

The same tests run unchanged against the local store, S3 on moto's server, S3 on
Ceph RADOS Gateway (when it is running; see scripts/ceph-rgw.sh) and B2 on b2sdk's
simulator. A fake that drifts from the real service is a bug in the fake: this
suite is what catches it.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from archiver.errors import ObjectExists, ObjectNotFound, StoreError, TransientStoreError
from archiver.store import CountingStore, LocalStore, RequestCounts, Retention, SpoolFile, Store, StoreWrapper, open_store

FORBIDDEN = ("delete", "remove", "hide", "overwrite", "rename", "unlink", "shorten", "bypass")


@pytest.fixture(scope="module")
def moto():
    from tests.servers import MotoServer

    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def b2sim():
    from tests.servers import B2Sim

    return B2Sim()


@pytest.fixture(params=["local", "s3-moto", "s3-ceph", "b2-sim"])
def store(request, tmp_path) -> Store:
    from archiver.policy import b2_backup_capabilities
    from archiver.store.b2 import B2Store
    from archiver.store.s3 import S3Store

    if request.param == "local":
        return open_store(str(tmp_path / "repo"))
    if request.param in ("s3-moto", "s3-ceph"):
        server = request.getfixturevalue(request.param.split("-")[1])
        backend = S3Store(server.client, server.make_bucket(), "contract/prefix", multipart_threshold=6 * 1024**2,
                          part_size=5 * 1024**2)
        backend.use_conditional(backend.probe_conditional_put())  # as `genarc init` does
        return open_store(f"s3://{request.param}", backend=backend)
    if request.param == "b2-sim":
        sim = request.getfixturevalue("b2sim")
        key_id, key = sim.make_key(b2_backup_capabilities(lock=True))
        return open_store("b2://sim", backend=B2Store(lambda: sim.api_for(key_id, key), sim.make_bucket(),
                                                      "contract/prefix"))
    raise AssertionError(request.param)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


RET = Retention("compliance", datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_put_then_get_stat_and_range(store):
    info = store.put("job/volumes/a/v1.7z", b"0123456789", sha256=sha(b"0123456789"), retention=RET)
    assert info.size == 10
    assert store.get("job/volumes/a/v1.7z", version_id=info.version_id) == b"0123456789"
    assert store.get("job/volumes/a/v1.7z", version_id=info.version_id, byte_range=(2, 5)) == b"234"
    assert store.stat("job/volumes/a/v1.7z", version_id=info.version_id).size == 10


def test_lock_is_carried_and_reported(store):
    info = store.put("job/volumes/locked", b"locked", sha256=sha(b"locked"), retention=RET)
    stat = store.stat("job/volumes/locked", version_id=info.version_id)
    if not store.capabilities.object_lock:
        assert stat.retention is None
        return
    assert stat.retention is not None and stat.retention.mode == "compliance"
    assert abs((stat.retention.until - RET.until).total_seconds()) <= 1


def test_reads_are_pinned_to_the_version_written(store):
    if not store.capabilities.versioning:
        pytest.skip("store has no versions")
    info = store.put("k/pinned", b"original", sha256=sha(b"original"))
    assert store.stat("k/pinned", version_id=info.version_id).sha256 in (None, sha(b"original"))
    assert store.get("k/pinned", version_id=info.version_id) == b"original"


def test_large_objects_go_multipart_and_keep_their_lock(store, tmp_path):
    big = tmp_path / "big"
    # 13 MiB of distinct bytes: three parts of the test stores' 5 MiB (sent at once), the last one short;
    # parts joined in the wrong order would not read back equal
    big.write_bytes(__import__("random").Random(94).randbytes(13 * 1024**2 + 1234))
    info = store.put("k/big", big, sha256=sha(big.read_bytes()), retention=RET)
    out = tmp_path / "out"
    store.download("k/big", out, version_id=info.version_id)
    assert out.read_bytes() == big.read_bytes()
    stat = store.stat("k/big", version_id=info.version_id)
    assert stat.size == big.stat().st_size
    if store.capabilities.object_lock:
        assert stat.retention is not None and stat.retention.until >= RET.until - __import__("datetime").timedelta(seconds=1)


def test_put_from_a_path_and_download(store, tmp_path):
    src = tmp_path / "payload"
    src.write_bytes(b"x" * 100000)
    info = store.put("k/payload", src, sha256=sha(src.read_bytes()))
    out = tmp_path / "out"
    store.download("k/payload", out, version_id=info.version_id)
    assert out.read_bytes() == src.read_bytes()


def test_keys_are_write_once(store):
    first = store.put("k/once", b"first", sha256=sha(b"first"))
    try:
        store.put("k/once", b"second", sha256=sha(b"second"))
    except ObjectExists:
        pass
    else:
        # Only a server that ignores If-None-Match on a versioned bucket (Ceph 16) lets a second put
        # through, and then as a new version: the one genarc recorded stays intact.
        assert not store.capabilities.conditional_put and store.capabilities.versioning
    assert store.get("k/once", version_id=first.version_id) == b"first"


def test_missing_object(store):
    with pytest.raises(ObjectNotFound):
        store.get("k/none")
    with pytest.raises(ObjectNotFound):
        store.stat("k/none")


def test_list_is_sorted_and_prefix_filtered(store):
    for key in ("j/m/b", "j/m/a", "j/v/c", "other/x"):
        store.put(key, key.encode(), sha256=sha(key.encode()))
    assert [i.key for i in store.list("j/m/")] == ["j/m/a", "j/m/b"]
    assert [i.key for i in store.list("j/")] == ["j/m/a", "j/m/b", "j/v/c"]
    assert {i.key for i in store.list_versions("j/")} >= {"j/m/a", "j/m/b", "j/v/c"}


def test_folders_are_named_by_one_delimiter_listing(store):
    for key in ("j/m/b", "j/m/a", "j/v/c", "other/x", "top", "k~monthly/m/d", "j-x/y", "j.z/w"):
        store.put(key, key.encode(), sha256=sha(key.encode()))
    counts = RequestCounts()
    counted = CountingStore(store, counts)
    top = [name for name in counted.folders("") if name != "genarc-probes"]  # the S3 fixture probed conditional puts
    assert top == ["j", "j-x", "j.z", "k~monthly", "other"]  # by name ("top" is an object, not a folder)
    assert list(counted.folders("j/")) == ["m", "v"]
    assert list(counted.folders("j/m/")) == [] and list(counted.folders("none/")) == []
    assert counts.snapshot()["lists"] == 4


def test_server_side_copy_makes_a_new_key(store):
    if not store.capabilities.server_side_copy:
        pytest.skip("store has no server-side copy")
    src = store.put("g1/v", b"payload", sha256=sha(b"payload"))
    copied = store.copy("g1/v", "g2/v", src_version_id=src.version_id, sha256=sha(b"payload"), retention=RET)
    assert store.get("g2/v", version_id=copied.version_id) == b"payload"
    with pytest.raises(ObjectExists):
        store.copy("g1/v", "g2/v", src_version_id=src.version_id, sha256=sha(b"payload"))


def test_a_copy_given_its_recorded_size_must_have_it(store):
    """A rollover passes each volume's size from its manifest: a copy of another size is refused, and on S3 (where
    CopyObject copies the whole object whatever its size) the source is then not asked for its size again."""
    from archiver.errors import IntegrityError
    from archiver.store import backend_of

    if not store.capabilities.server_side_copy:
        pytest.skip("store has no server-side copy")
    src = store.put("g1/v", b"payload", sha256=sha(b"payload"))
    backend, heads = backend_of(store), []
    if hasattr(backend, "client"):  # S3: every HEAD the copy sends, by key
        backend.client.meta.events.register("before-parameter-build.s3.HeadObject",
                                            lambda params, **kw: heads.append(params["Key"]))
    copied = store.copy("g1/v", "g2/v", src_version_id=src.version_id, sha256=sha(b"payload"), retention=RET, size=7)
    assert copied.size == 7 and store.get("g2/v", version_id=copied.version_id) == b"payload"
    if hasattr(backend, "client"):
        assert heads and not [key for key in heads if key.endswith("g1/v")]  # the copy was checked, not its source
    with pytest.raises(IntegrityError, match="8"):  # the record says 8 bytes: the 7 the copy has are refused
        store.copy("g1/v", "g3/v", src_version_id=src.version_id, sha256=sha(b"payload"), retention=RET, size=8)


def test_the_client_store_has_no_way_to_destroy(store):
    """Invariant 1: no delete, hide, overwrite or retention-shortening method anywhere in the stack."""
    layer = store
    while True:
        names = [n for n, _ in inspect.getmembers(type(layer), callable) if not n.startswith("_")]
        assert not [n for n in names if any(word in n.lower() for word in FORBIDDEN)], type(layer)
        if not isinstance(layer, StoreWrapper):
            break
        layer = layer.inner


def test_a_spool_file_is_put_like_any_path(store, tmp_path):
    """A volume the caller only deletes afterwards: every store stores its bytes; then the caller's name goes."""
    spool = SpoolFile(tmp_path / "volume")
    spool.write_bytes(b"v" * 70000)
    info = store.put("k/volume", spool, sha256=sha(b"v" * 70000))
    spool.unlink()
    assert store.get("k/volume", version_id=info.version_id) == b"v" * 70000


def test_the_local_store_links_a_spool_file_in_rather_than_copying_it(tmp_path):
    """On the repository's file system a spool file becomes the object (one write of a volume, not two), made
    read-only first; a file with another name, or a plain path, is copied, so no one else's file is taken over."""
    store = LocalStore(tmp_path / "repo")
    spool = SpoolFile(tmp_path / "v1")
    spool.write_bytes(b"one")
    inode = spool.stat().st_ino
    store.put("g/v1", spool, sha256=sha(b"one"))
    spool.unlink()
    stored = tmp_path / "repo" / "g" / "v1"
    assert stored.stat().st_ino == inode and stored.stat().st_nlink == 1 and stored.stat().st_mode & 0o222 == 0
    shared = SpoolFile(tmp_path / "v2")
    shared.write_bytes(b"two")
    (tmp_path / "other-name").hardlink_to(shared)
    plain = tmp_path / "v3"
    plain.write_bytes(b"three")
    store.put("g/v2", shared, sha256=sha(b"two"))
    store.put("g/v3", plain, sha256=sha(b"three"))
    assert (tmp_path / "repo" / "g" / "v2").stat().st_ino != shared.stat().st_ino
    assert (tmp_path / "repo" / "g" / "v3").stat().st_ino != plain.stat().st_ino
    assert shared.stat().st_mode & 0o200 and plain.stat().st_mode & 0o200  # not made read-only: not taken over
    assert sorted(p.name for p in (tmp_path / "repo" / "g").iterdir()) == ["v1", "v2", "v3"]  # no temporary left
    assert store.get("g/v2") == b"two" and store.get("g/v3") == b"three"


def test_local_objects_are_read_only_files(tmp_path):
    store = LocalStore(tmp_path)
    store.put("a/b", b"x", sha256=sha(b"x"))
    assert (tmp_path / "a" / "b").stat().st_mode & 0o222 == 0
    assert not store.capabilities.object_lock and not store.capabilities.ransomware_safe


class Flaky:
    """A fault injector that sits inside the retry layer: fails a share of calls transiently.

    With ``land_first`` the first put lands but its reply is lost, as after a network reset.
    """

    def __init__(self, inner, failures: int, land_first: bool = False):
        self.inner, self.failures, self.land_first = inner, failures, land_first
        self.capabilities = inner.capabilities

    def _maybe_fail(self):
        if self.failures > 0:
            self.failures -= 1
            raise TransientStoreError("503 Slow Down (injected)")

    def put(self, key, source, *, sha256, retention=None):
        if self.land_first:
            self.land_first = False
            self.inner.put(key, source, sha256=sha256, retention=retention)
            raise TransientStoreError("connection reset after upload (injected)")
        self._maybe_fail()
        return self.inner.put(key, source, sha256=sha256, retention=retention)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_retry_resends_same_bytes_to_same_key(tmp_path):
    counts = RequestCounts()
    flaky = {}

    def inject(inner):
        flaky["f"] = Flaky(inner, failures=3)
        return flaky["f"]

    store = open_store(str(tmp_path), counts=counts, inside_retry=inject, retry_sleep=lambda s: None)
    store.put("k/v", b"data", sha256=sha(b"data"))
    assert store.get("k/v") == b"data"
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["v"]  # nothing renamed, no stray copies
    assert counts.snapshot()["deletes"] == 0


def test_retry_after_a_lost_reply_accepts_the_landed_object(tmp_path):
    store = open_store(str(tmp_path), inside_retry=lambda inner: Flaky(inner, 0, land_first=True),
                       retry_sleep=lambda s: None)
    info = store.put("k/v", b"data", sha256=sha(b"data"))
    assert info.size == 4 and store.get("k/v") == b"data"


def test_retry_budget_exhausted_is_a_clear_error(tmp_path):
    store = open_store(str(tmp_path), inside_retry=lambda inner: Flaky(inner, failures=100), retry_sleep=lambda s: None)
    with pytest.raises(StoreError, match="failed 6 times"):
        store.put("k/v", b"data", sha256=sha(b"data"))
    assert not (tmp_path / "k" / "v").exists()


@pytest.mark.parametrize("server_name", ["moto", "ceph"])
def test_puts_from_upload_threads_cost_what_one_thread_pays(request, server_name):
    """Volumes go up from several threads at once. What an S3 store learns on its first write (whether a single
    PUT keeps its lock, how a missing key answers) is learned once, not once per thread: the requests equal a
    one-thread run's, and every object carries its lock."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from archiver.store.s3 import S3Store

    server = request.getfixturevalue(server_name)
    bodies = [f"volume {i}".encode() * 100 for i in range(8)]

    def run(threads: int) -> tuple[dict, S3Store]:
        counts = RequestCounts()
        backend = S3Store(server.client, server.make_bucket(), "contract/prefix", counts=counts)
        backend.use_conditional(backend.probe_conditional_put())
        backend.capabilities  # noqa: B018 - probed before counting, as a run reads them from the settings
        before = counts.snapshot()["http_requests"]
        barrier = threading.Barrier(threads)

        def put(i: int):
            if threads > 1:
                barrier.wait()
            return backend.put(f"job/volumes/g/v{i}.7z", bodies[i], sha256=sha(bodies[i]), retention=RET)

        with ThreadPoolExecutor(threads) as pool:
            infos = list(pool.map(put, range(len(bodies))))
        spent = counts.snapshot()["http_requests"] - before
        assert backend.capabilities.object_lock
        for info in infos:
            lock = backend.stat(info.key, version_id=info.version_id).retention
            assert lock is not None and lock.mode == "compliance" and abs((lock.until - RET.until).total_seconds()) <= 1
        return spent, backend

    alone, _ = run(1)
    together, _ = run(4)
    assert together == alone


def test_a_local_download_is_the_object_read_only_and_never_written_through(tmp_path):
    """On one file system a download is a new name of the object (no copy); a second download to the same path
    replaces that name and never writes into the object, even as root (who may write a read-only file)."""
    store = LocalStore(tmp_path / "repo")
    store.put("g/a", b"alpha", sha256=sha(b"alpha"))
    store.put("g/b", b"bravo", sha256=sha(b"bravo"))
    local = tmp_path / "work" / "volume.7z"
    local.parent.mkdir()
    store.download("g/a", local)
    assert local.read_bytes() == b"alpha" and local.stat().st_ino == (tmp_path / "repo" / "g" / "a").stat().st_ino
    store.download("g/b", local)
    assert local.read_bytes() == b"bravo" and store.get("g/a") == b"alpha"
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        other = shm / f"genarc-download-{os.getpid()}"  # another file system: a copy, not a link
        try:
            store.download("g/a", other)
            assert other.read_bytes() == b"alpha" and other.stat().st_ino != (tmp_path / "repo" / "g" / "a").stat().st_ino
        finally:
            other.unlink(missing_ok=True)
    assert store.get("g/a") == b"alpha"
