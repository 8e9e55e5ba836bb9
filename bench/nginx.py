"""nginx as the static upstream: the physical floor of every non-streaming figure.

One nginx (one worker, like the single-process proxy) on loopback answers POST
``/json/v1/chat/completions`` with the canned chat completion and POST
``/sse/v1/chat/completions`` with the canned 40-chunk SSE stream, both from ``return``
directives (nginx answers POST on a static file with 405, ``return`` has no such rule).
The two prefixes let one nginx be two OpenAI-style backends of the proxy.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from procs import LOOPBACK, Service, children

JSON_PREFIX = "/json/v1"
SSE_PREFIX = "/sse/v1"
CHAT_PATH = "/chat/completions"

_CONFIG = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 16384;
    multi_accept on;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_buffer_size 64k;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {host}:{port} backlog=4096;
        root {prefix}/www;
        etag off;
        if_modified_since off;
        error_page 405 =200 $uri;
        location = {json_path} {{
            default_type application/json;
        }}
        location = {sse_path} {{
            default_type text/event-stream;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


def version() -> str:
    """``nginx -v``, e.g. ``nginx/1.22.1``."""
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ")


def available() -> bool:
    """Whether an ``nginx`` binary is on PATH (Debian puts it in /usr/sbin)."""
    return shutil.which("nginx") is not None


def workers(master: int, timeout: float = 5.0) -> list[int]:
    """The worker PIDs of the nginx master ``master`` (waiting until it has forked them)."""
    deadline = time.monotonic() + timeout
    while not (found := children(master)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def service(workdir: Path, port: int, json_body: bytes, sse_body: bytes) -> Service:
    """An nginx :class:`~procs.Service` in ``workdir`` serving the two canned bodies."""
    # Workers run as an unprivileged user when started by root: they must reach the files.
    workdir.chmod(0o755)
    prefix = workdir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)
    config = prefix / "nginx.conf"
    config.write_text(
        _CONFIG.format(
            prefix=prefix,
            host=LOOPBACK,
            port=port,
            json_path=JSON_PREFIX + CHAT_PATH,
            sse_path=SSE_PREFIX + CHAT_PATH,
        )
    )
    for path, body in ((JSON_PREFIX, json_body), (SSE_PREFIX, sse_body)):
        file = prefix / "www" / (path + CHAT_PATH).lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(body)
    for directory in (prefix / "www", *(prefix / "www").rglob("*")):
        if directory.is_dir():
            directory.chmod(0o755)
    nginx = shutil.which("nginx") or "nginx"
    return Service(
        "nginx",
        [nginx, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
        port,
        workdir / "nginx.log",
        stop_signal=signal.SIGQUIT,
    )
