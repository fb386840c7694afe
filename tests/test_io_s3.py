"""s3:// in and out against a real S3-compatible server (moto's server mode on 127.0.0.1, started here), through a
small fault-injecting HTTP proxy that breaks the first download of each shard mid-stream and answers the first
upload of each output shard with 503 SlowDown: the job must retry and finish as if nothing happened."""

from __future__ import annotations

import http.client
import io
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from jobkit import job_args, jpeg_bytes, png_bytes

from pipeline.cli import main

pytest.importorskip("s3fs")
pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

SIZE = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # a loaded machine can be slow to stop it: make sure it goes
        proc.kill()
        proc.wait()


class FlakyProxy:
    """Forwards HTTP to moto; breaks the first ``get_faults`` GETs of each ``*.tar`` object mid-body and answers the
    first PUT of each ``*.tar`` object with 503 SlowDown. Records what it injected."""

    def __init__(self, upstream: str, get_faults: int = 1) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.injected: list[str] = []
        self.budget = {"GET": get_faults, "PUT": 1}
        self.seen: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _fault(self, method: str) -> bool:
                path = self.path.split("?")[0]
                if not path.endswith(".tar") or "uploadId" in self.path:
                    return False
                with proxy.lock:
                    done = proxy.seen.get((method, path), 0)
                    if done >= proxy.budget[method]:
                        return False
                    proxy.seen[(method, path)] = done + 1
                    proxy.injected.append(f"{method} {path}")
                return True

            def _forward(self, method: str) -> None:
                body = self._body() if method in ("PUT", "POST") else b""
                if method == "PUT" and self._fault(method):
                    err = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(err)))
                    self.end_headers()
                    self.wfile.write(err)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "host")}
                if method in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                conn.request(method, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection", "date", "server"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if method == "HEAD" else None  # HEAD: the object's size
                self.send_header("Content-Length", length or str(len(data)))
                if method == "GET" and resp.status in (200, 206) and len(data) > 2048 and self._fault(method):
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])  # the connection drops halfway through the body
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_HEAD(self) -> None:
                self._forward("HEAD")

            def do_PUT(self) -> None:
                self._forward("PUT")

            def do_POST(self) -> None:
                self._forward("POST")

            def do_DELETE(self) -> None:
                self._forward("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def s3(moto_url, monkeypatch, request):
    # s3fs itself retries a broken download 5 times; the 6th failure reaches our RetryingReader, which reopens the
    # object and resumes at the byte where the stream broke.
    proxy = FlakyProxy(moto_url, get_faults=getattr(request, "param", 6))
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": proxy.url,
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = f"b{int(time.time() * 1000) % 10**9}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket, proxy
    proxy.close()


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_embed_s3_in_and_out_with_transient_errors(s3, tiny_checkpoint, tmp_path, photo_factory) -> None:
    client, bucket, proxy = s3
    for s in range(2):
        members = [(f"k{s}_{i}.jpg", jpeg_bytes(60, 80, seed=10 * s + i)) for i in range(3)]
        client.put_object(Bucket=bucket, Key=f"in/shard-{s}.tar", Body=_tar(members))
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(photo_factory(40, 40, seed=1)))
    args = job_args("embed", f"s3://{bucket}/in", f"s3://{bucket}/out", tiny_checkpoint, SIZE, "--secret", secret)
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "6 images ok, 0 failed" in res.output
    # faults really happened: each shard's download broke 6 times, each output's first upload got 503
    assert sorted(proxy.injected) == sorted(
        [f"GET /{bucket}/in/shard-0.tar"] * 6
        + [f"GET /{bucket}/in/shard-1.tar"] * 6
        + [f"PUT /{bucket}/out/shard-0.tar", f"PUT /{bucket}/out/shard-1.tar"]
    )
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]}
    assert {"out/shard-0.tar", "out/shard-0.parquet", "out/shard-1.tar", "out/shard-1.parquet"} <= keys
    assert "out/manifest.json" in keys  # the job record
    out_tar = client.get_object(Bucket=bucket, Key="out/shard-1.tar")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(out_tar)) as tf:
        assert tf.getnames() == [f"k1_{i}.png" for i in range(3)]
    table = pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key="out/shard-0.parquet")["Body"].read()))
    assert table.column("status").to_pylist() == ["ok"] * 3

    # the rerun reads the results back from S3 and skips both shards; extract reads S3 and writes locally
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0 and "2 already done" in res.output
    rev_args = job_args("extract", f"s3://{bucket}/out", tmp_path / "rev", tiny_checkpoint, SIZE)
    res = CliRunner().invoke(main, rev_args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with tarfile.open(tmp_path / "rev" / "shard-0.tar") as tf:
        assert tf.getnames() == [f"k0_{i}.secret.png" for i in range(3)]


@pytest.mark.parametrize("s3", [0], indirect=True)  # no injected faults here
def test_iter_image_members_from_s3(s3) -> None:
    from pipeline.io.shards import iter_image_members

    client, bucket, _ = s3
    a, b = jpeg_bytes(20, 20, seed=1), jpeg_bytes(20, 20, seed=2)
    client.put_object(Bucket=bucket, Key="train/s0.tar", Body=_tar([("a.jpg", a), ("a.json", b"{}"), ("b.jpg", b)]))
    assert list(iter_image_members(f"s3://{bucket}/train")) == [("a.jpg", a), ("b.jpg", b)]
