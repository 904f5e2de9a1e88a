#!/usr/bin/env python3
"""Issue 11 item 4, at full scale: 10,000 idle TCP connections from one
address must not keep another address from being served.

Starts target/release/snigate with the default limits (an http listener,
max_connections 10000, max_connections_per_ip 1000) in front of a tiny
backend, opens 10,000 idle connections from 127.0.0.1, then times one
request from 127.0.0.2 and prints the refusal metrics. Not a CI test (it
needs `ulimit -n` above 10,000 and a few seconds); run it by hand:

    cargo build --release && python3 benches/idle-flood.py
"""

import http.server
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

IDLE = 10_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def request_from(source, port):
    """Status of one GET sent from `source`, and the seconds it took."""
    start = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.sendall(b"GET /other HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    return data.split(b"\r\n", 1)[0].decode(), time.monotonic() - start


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory() as d:
        config = os.path.join(d, "snigate.toml")
        with open(config, "w") as f:
            f.write(
                f'[admin]\nbind = "127.0.0.1:{admin}"\n\n'
                f'[[listener]]\nname = "main"\nbind = ["127.0.0.1:{port}"]\nmode = "http"\n'
                f'default_upstream = "be"\n\n'
                f'[[upstream]]\nname = "be"\nservers = ["127.0.0.1:{backend.server_port}"]\n'
            )
        proxy = subprocess.Popen(
            [os.path.join(ROOT, "target/release/snigate"), "run", "-c", config],
            env={**os.environ, "NO_COLOR": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit("snigate did not start")
                    time.sleep(0.05)
            idle = []
            for _ in range(IDLE):
                try:
                    idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError:
                    pass  # reset before connect returned: refused
            status, took = request_from("127.0.0.2", port)
            print(f"{len(idle)} connections opened from 127.0.0.1")
            print(f"127.0.0.2: {status} in {took * 1000:.1f} ms")
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5)
            for line in metrics.read().decode().splitlines():
                if line.startswith(("snigate_connections_refused", "snigate_active_connections")):
                    print(line)
            for s in idle:
                s.close()
            ok = status.endswith("200 OK") and took < 1.0
            # The refusals after the first are summed up at the end of the
            # 10 s interval: wait for that line.
            time.sleep(10.5)
        finally:
            proxy.terminate()
            _, stderr = proxy.communicate(timeout=40)
        refusals = [l for l in stderr.splitlines() if "connections refused" in l]
        print(f"refusal log lines: {len(refusals)}")
        for l in refusals[:3]:
            print("  " + l[:300])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
