"""Shard reader and writer on local files: listing, member order, unsafe names, duplicates, truncation, commits."""

from __future__ import annotations

import tarfile

import pytest
from jobkit import jpeg_bytes, make_tar, photo_shard, tree

from pipeline.io.shards import (
    TarShardWriter,
    check_member_name,
    iter_image_members,
    iter_members,
    list_shards,
    split_folder_name,
    split_key,
)


def test_list_shards_tars_folder_and_single_file(tmp_path) -> None:
    photo_shard(tmp_path / "src" / "b.tar", 2, seed=1)
    photo_shard(tmp_path / "src" / "a.tar", 2, seed=0)
    (tmp_path / "src" / "notes.txt").write_text("ignored")
    shards = list_shards(str(tmp_path / "src"))
    assert [s.name for s in shards] == ["a", "b"] and all(s.kind == "tar" for s in shards)
    assert list_shards(str(tmp_path / "src" / "b.tar"))[0].name == "b"

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("x.jpg", "IMG.v2.JPG", "x.secret.png", "readme.md"):
        (folder / name).write_bytes(jpeg_bytes(16, 16))
    (s,) = list_shards(str(folder))
    assert s.kind == "folder" and s.name == "photos" and set(s.files) == {"x.jpg", "IMG.v2.JPG", "x.secret.png"}
    members = list(iter_members(s, compound_exts=("secret.png",)))
    assert [(m.key, m.ext) for m in members] == [("IMG.v2", "jpg"), ("x", "jpg"), ("x", "secret.png")]
    # the fingerprint changes when the folder gains an image
    (folder / "y.jpg").write_bytes(jpeg_bytes(16, 16))
    assert list_shards(str(folder))[0].fingerprint != s.fingerprint

    with pytest.raises(FileNotFoundError):
        list_shards(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \*.tar shards and no images"):
        list_shards(str(tmp_path / "empty"))


def test_key_split_and_name_checks() -> None:
    assert split_key("dir/abc.secret.PNG") == ("dir/abc", "secret.png")
    assert split_key("abc") == ("abc", "")
    assert split_folder_name("a.b.jpg") == ("a.b", "jpg")
    assert split_folder_name("a.secret.png", ("secret.png",)) == ("a", "secret.png")
    assert check_member_name("ok/a.jpg") is None
    assert "'..'" in check_member_name("../evil.jpg")
    assert "'..'" in check_member_name("a/../../evil.jpg")
    assert "absolute" in check_member_name("/etc/evil.jpg")
    assert "empty key" in check_member_name("dir/.jpg")


def test_members_stream_in_order_with_error_members(tmp_path) -> None:
    good = jpeg_bytes(16, 16)
    path = make_tar(
        tmp_path / "s.tar",
        [
            ("a.jpg", good),
            ("../up.jpg", good),
            ("/abs.jpg", good),
            ("a.jpg", good),
            ("./b.json", b"{}"),
            ("c.jpg", good),
        ],
    )
    with tarfile.open(path, "a") as tf:  # a symlink member
        ti = tarfile.TarInfo("link.jpg")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(ti)
    (shard,) = list_shards(str(path))
    members = list(iter_members(shard))
    assert [m.name for m in members] == ["a.jpg", "../up.jpg", "/abs.jpg", "a.jpg", "b.json", "c.jpg", "link.jpg"]
    assert [m.index for m in members] == list(range(7))
    errors = {m.index: m.error for m in members if m.error}
    assert set(errors) == {1, 2, 3, 6}
    assert "'..'" in errors[1] and "absolute" in errors[2] and "duplicate member name" in errors[3]
    assert "not a regular file" in errors[6]
    assert members[0].data == good and members[4].data == b"{}"
    assert list(iter_image_members(str(path))) == [("a.jpg", good), ("c.jpg", good)]


def test_truncated_tar_gives_members_then_one_error(tmp_path) -> None:
    path = photo_shard(tmp_path / "t.tar", 4)
    data = path.read_bytes()
    with tarfile.open(path) as tf:
        infos = tf.getmembers()
    # cut in the middle of the third member's data
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: infos[2].offset_data + infos[2].size // 2])
    members = list(iter_members(list_shards(str(cut))[0]))
    assert [m.error is None for m in members] == [True, True, False]
    assert "corrupt or truncated after 2 members" in members[-1].error and members[-1].key == ""
    # cut exactly at a member boundary: no end-of-archive marker
    cut.write_bytes(data[: infos[3].offset])
    members = list(iter_members(list_shards(str(cut))[0]))
    assert len(members) == 4 and "truncated" in members[-1].error and members[-1].index == 3

    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file at all" * 30)
    (m,) = list(iter_members(list_shards(str(tmp_path / "junk.tar"))[0]))
    assert m.error and "tar" in m.error


def test_writer_commits_atomically_and_abort_leaves_nothing(tmp_path) -> None:
    dst = tmp_path / "out"
    w = TarShardWriter(str(dst), "s1", "job1")
    w.add("a.png", b"1234")
    assert tree(dst) == {".s1.tar.job1.partial"}  # only the hidden temporary name exists until commit
    with pytest.raises(ValueError, match="duplicate output member"):
        w.add("a.png", b"x")
    w.commit()
    assert tree(dst) == {"s1.tar"}
    with tarfile.open(dst / "s1.tar") as tf:
        assert tf.extractfile("a.png").read() == b"1234"

    w = TarShardWriter(str(dst), "s2", "job2")
    w.add("b.png", b"5")
    w.abort()
    assert tree(dst) == {"s1.tar"}
    # a temporary file left by a killed job is removed when the shard is written again
    (dst / ".s3.tar.deadjob.partial").write_bytes(b"half")
    TarShardWriter(str(dst), "s3", "job3").commit()
    assert tree(dst) == {"s1.tar", "s3.tar"}


def test_writer_writes_tarfile_s_own_bytes(tmp_path) -> None:
    """The shard is byte for byte what ``tarfile`` writes in PAX format: members of whole and partial blocks, an
    empty one, a name beyond the 100 bytes of a plain header and one outside ASCII (both take a PAX header), and an
    archive padded to a whole record; an empty shard too."""
    import io

    members = [
        ("a.png", b"x" * 512),
        ("b.png", bytes(range(256)) * 3),
        ("empty.txt", b""),
        ("deep/" + "n" * 120 + ".png", b"long name"),
        ("sub/caf\u00e9-\u56fe.png", b"not ascii" * 100),
    ]
    for shard, chosen in (("full", members), ("none", [])):
        w = TarShardWriter(str(tmp_path), shard, "job")
        for name, data in chosen:
            w.add(name, data)
        w.commit()
        want = io.BytesIO()
        with tarfile.open(fileobj=want, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, data in chosen:
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode = len(data), w.mtime, 0o644
                tar.addfile(ti, io.BytesIO(data))
        assert (tmp_path / f"{shard}.tar").read_bytes() == want.getvalue()
    with tarfile.open(tmp_path / "full.tar") as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()] == members


def test_member_headers_are_tarfile_s_for_every_name_and_size() -> None:
    """The headers made from the template are ``TarInfo.tobuf``'s at the edges of the plain ustar header (a
    100-byte name, the largest 11-digit size) and past them (``tobuf`` itself: a PAX header)."""
    from pipeline.io.tar_writer import OUTPUT_MTIME, _Headers

    headers = _Headers(OUTPUT_MTIME)
    for name, size in [
        ("a.png", 0),
        ("n" * 100, 1),
        ("k/img-000123.secret.png", 200_123),
        ("x", 8**11 - 1),
        ("n" * 101, 2),
        ("caf\u00e9.png", 3),
        ("big.bin", 8**11),
    ]:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = size, OUTPUT_MTIME, 0o644
        assert headers(name, size) == ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), (name, size)
