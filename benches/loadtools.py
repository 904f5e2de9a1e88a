#!/usr/bin/env python3
"""Backend and load generators for benches/idle-10k.sh and benches/soak.sh.

Python 3 standard library only.  Everything talks to 127.0.0.1 only.

Subcommands
  backend    HTTP/1.1 keep-alive backend (asyncio):
               GET /anything         -> 200 "hello from NAME\n"
               GET /big?size=N       -> 200, N bytes; byte at offset o is o % 256
               PUT|POST (any path)   -> 200 {"len":N,"crc":CRC32,"server":NAME}
                                        (Content-Length or chunked bodies)
             Prints its request counts to stderr on SIGTERM.
  idle       10,000-idle-connections client, in phases driven by files in
             --ctl DIR: opens -n TLS connections and keeps them (writes
             phase1.json), waits for DIR/go, then sends one GET on every
             connection (writes phase2.json), waits for DIR/close, closes all.
  keepalive | newconn | nosni | badhello | upload | slowread | stopread | idlers
             soak load generators: each runs until SIGTERM (or --duration),
             then writes a JSON summary (--out): ok counts, expected outcomes,
             error counts by kind, and the time span of every error (to match
             them against the injected backend kills).
  summary    reads the soak run's directory and prints the report.

Run `loadtools.py SUBCOMMAND -h` for the options.
"""
import argparse
import asyncio
import calendar
import json
import os
import random
import re
import signal
import socket
import ssl
import statistics
import struct
import sys
import threading
import time
import zlib

HOST = "127.0.0.1"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PAT = bytes(range(256)) * 260          # /big body pattern: byte o is o % 256
BLOCK = PAT[:65536]


# --------------------------------------------------------------------- backend
async def backend_main(a):
    counts = {}
    name = a.name
    xb = b"X-Backend: " + name.encode() + b"\r\n"

    def count(k):
        counts[k] = counts.get(k, 0) + 1

    async def read_body(reader, headers):
        n, crc = 0, 0
        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass                                   # trailers
                    break
                left = size
                while left:
                    chunk = await reader.read(min(left, 262144))
                    if not chunk:
                        raise asyncio.IncompleteReadError(b"", left)
                    crc = zlib.crc32(chunk, crc)
                    n += len(chunk)
                    left -= len(chunk)
                await reader.readexactly(2)
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left:
                chunk = await reader.read(min(left, 262144))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", left)
                crc = zlib.crc32(chunk, crc)
                n += len(chunk)
                left -= len(chunk)
        return n, crc

    async def handle(reader, writer):
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                n, crc = await read_body(reader, headers)
                keep = version.strip() == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                conn_hdr = b"" if keep else b"Connection: close\r\n"
                path, _, query = target.partition("?")
                params = dict(p.partition("=")[::2] for p in query.split("&") if p)
                if method in ("PUT", "POST"):
                    count("upload")
                    body = json.dumps({"len": n, "crc": crc, "server": name}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s%s\r\n"
                                 % (len(body), xb, conn_hdr) + body)
                elif path == "/big":
                    count("big")
                    size = int(params.get("size", "1048576"))
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%s%s\r\n"
                                 % (size, xb, conn_hdr))
                    left = size
                    while left:
                        k = min(left, len(BLOCK))
                        writer.write(BLOCK[:k])
                        left -= k
                        await writer.drain()
                else:
                    count("get")
                    body = b"hello from " + name.encode() + b"\n"
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s%s\r\n"
                                 % (len(body), xb, conn_hdr) + body)
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            count("conn-error")
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, a.port, backlog=4096, limit=1 << 17, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"backend {name} listening on {HOST}:{a.port}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()
    print(f"backend {name} counts {json.dumps(counts, sort_keys=True)}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ idle 10k client
def client_ctx(ca, verify_hostname=True):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.check_hostname = verify_hostname
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def read_response(reader, timeout):
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    clen = None
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            clen = int(v)
        if k.strip().lower() == "transfer-encoding":
            raise RuntimeError("unexpected Transfer-Encoding")
    body = await asyncio.wait_for(reader.readexactly(clen or 0), timeout)
    return status, body


async def wait_file(path, timeout):
    t_end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > t_end:
            return False
        await asyncio.sleep(0.1)
    return True


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


# A minimal h2 client for `idle --h2` (the standard library has none):
# enough frames to open a connection, send one GET and read its answer.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def h2_literal(name_index, value):
    # HPACK literal header field without indexing, name from the static table
    v = value.encode()
    return bytes([name_index, len(v)]) + v


async def h2_get(r, w, path, host, timeout):
    """GET `path` on stream 1 of an h2 connection whose preface is sent; the
    status (200 when the server encodes `:status 200` as static entry 8, else
    0) and the body."""
    block = b"\x82\x87" + h2_literal(4, path) + h2_literal(1, host)  # GET, https, :path, :authority
    w.write(h2_frame(1, 0x5, 1, block))  # HEADERS, END_STREAM | END_HEADERS
    status, body = 0, b""
    while True:
        head = await asyncio.wait_for(r.readexactly(9), timeout)
        n = int.from_bytes(head[:3], "big")
        ftype, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = await asyncio.wait_for(r.readexactly(n), timeout) if n else b""
        if ftype == 4 and not flags & 1:
            w.write(h2_frame(4, 1, 0))  # SETTINGS ACK
        elif ftype == 6 and not flags & 1:
            w.write(h2_frame(6, 1, 0, payload))  # PING ACK
        elif ftype == 7:
            raise RuntimeError("GOAWAY")
        elif stream == 1 and ftype == 1:
            status = 200 if payload[:1] == b"\x88" else 0
        elif stream == 1 and ftype == 0:
            body += payload
        elif stream == 1 and ftype == 3:
            raise RuntimeError("RST_STREAM")
        if stream == 1 and ftype in (0, 1) and flags & 1:
            return status, body


async def idle_main(a):
    ctx = client_ctx(a.ca)
    if a.h2:
        ctx.set_alpn_protocols(["h2"])
    conns = [None] * a.n
    errors = {}
    first_err = []
    versions, ciphers = {}, {}

    def err(phase, e):
        k = f"{phase}: {type(e).__name__}"
        errors[k] = errors.get(k, 0) + 1
        if len(first_err) < 5:
            first_err.append(f"{k}: {e}")

    def closed_count():
        return sum(1 for c in conns if c is not None and (c[0].at_eof() or c[0].exception() is not None))

    # phase 1: handshakes
    sem = asyncio.Semaphore(a.concurrency)

    async def open_one(i):
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(
                    HOST, a.port, ssl=ctx, server_hostname=a.sni, ssl_handshake_timeout=60,
                    limit=1 << 16), 90)
                so = w.get_extra_info("ssl_object")
                if so is None or so.version() is None:
                    raise RuntimeError("handshake not complete")
                versions[so.version()] = versions.get(so.version(), 0) + 1
                ciphers[so.cipher()[0]] = ciphers.get(so.cipher()[0], 0) + 1
                if a.h2:
                    if so.selected_alpn_protocol() != "h2":
                        raise RuntimeError("the server did not choose h2")
                    # A browser's connection: preface and SETTINGS at once.
                    w.write(H2_PREFACE + h2_frame(4, 0, 0))
                conns[i] = (r, w)
            except Exception as e:  # noqa: BLE001
                err("handshake", e)

    t0 = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(a.n)))
    t_open = time.monotonic() - t0
    await asyncio.sleep(a.settle)
    est = sum(1 for c in conns if c is not None)
    rep1 = {"requested": a.n, "established": est, "handshake_seconds": round(t_open, 2),
            "handshakes_per_s": round(est / t_open, 1) if t_open else None,
            "closed_by_peer": closed_count(), "errors": dict(errors), "first_errors": list(first_err),
            "tls_versions": versions, "ciphers": ciphers, "sni": a.sni}
    write_json(os.path.join(a.ctl, "phase1.json"), rep1)
    if not await wait_file(os.path.join(a.ctl, "go"), a.wait):
        return
    # phase 2: one request per connection
    statuses = {}
    req_ok = 0
    sem2 = asyncio.Semaphore(a.req_concurrency)
    host = a.sni or HOST

    async def req_one(i):
        nonlocal req_ok
        c = conns[i]
        if c is None:
            return
        async with sem2:
            r, w = c
            try:
                if a.h2:
                    status, body = await h2_get(r, w, f"/idle10k/{i}", host, 60)
                else:
                    w.write(f"GET /idle10k/{i} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: idle-10k\r\n\r\n".encode())
                    status, body = await read_response(r, 60)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200 and body.startswith(b"hello from"):
                    req_ok += 1
            except Exception as e:  # noqa: BLE001
                err("request", e)

    t1 = time.monotonic()
    await asyncio.gather(*(req_one(i) for i in range(a.n)))
    t_req = time.monotonic() - t1
    await asyncio.sleep(a.settle)
    rep2 = {"requests_sent": est, "requests_200": req_ok, "statuses": {str(k): v for k, v in statuses.items()},
            "request_seconds": round(t_req, 2), "closed_by_peer": closed_count(), "errors": dict(errors),
            "first_errors": list(first_err)}
    write_json(os.path.join(a.ctl, "phase2.json"), rep2)
    await wait_file(os.path.join(a.ctl, "close"), a.wait)
    still = sum(1 for c in conns if c is not None) - closed_count()
    write_json(os.path.join(a.ctl, "phase3.json"), {"open_before_close": still})
    for c in conns:
        if c is not None:
            c[1].transport.abort()


# ------------------------------------------------------ soak: shared helpers
STOP = threading.Event()


class Stats:
    """Thread-safe counters for one load generator."""

    def __init__(self, role):
        self.role = role
        self.lock = threading.Lock()
        self.ok = {}           # kind -> count of successful operations
        self.expected = {}     # kind -> count of faults that behaved as they must
        self.errors = {}       # kind -> count of failures
        self.events = []       # [t_start, t_end, kind, detail] per failure (wall clock)
        self.nevents = 0
        self.bytes = 0
        self.t0 = time.time()

    def add(self, d, kind, n=1):
        with self.lock:
            d[kind] = d.get(kind, 0) + n

    def good(self, kind, nbytes=0):
        with self.lock:
            self.ok[kind] = self.ok.get(kind, 0) + 1
            self.bytes += nbytes

    def fine(self, kind):
        self.add(self.expected, kind)

    def fail(self, kind, t_start, exc_or_msg, backend=None):
        """backend: the backend that was serving (from X-Backend), when known."""
        if STOP.is_set():
            return                        # cut by our own shutdown: not an error
        detail = exc_or_msg if isinstance(exc_or_msg, str) else f"{type(exc_or_msg).__name__}: {exc_or_msg}"
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.nevents += 1
            if len(self.events) < 2000:
                self.events.append([round(t_start, 3), round(time.time(), 3), kind, detail[:200], backend])

    def dump(self, path):
        with self.lock:
            obj = {"role": self.role, "seconds": round(time.time() - self.t0, 1), "ok": self.ok,
                   "expected": self.expected, "errors": self.errors, "error_events": self.events,
                   "error_events_total": self.nevents, "bytes": self.bytes}
        write_json(path, obj)


class Conn:
    """A blocking (TLS) socket with a read buffer and a tiny HTTP/1.1 client."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def recv(self, n=65536):
        if self.buf:
            b, self.buf = self.buf[:n], self.buf[n:]
            return b
        return self.s.recv(n)

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed before response head")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return status, hdrs

    def body(self, hdrs, sink=None):
        """Reads the body (Content-Length, chunked, or until close); returns it
        (or its length when sink is given: sink(chunk) gets every piece)."""
        out = []
        n = 0

        def take(chunk):
            nonlocal n
            n += len(chunk)
            if sink:
                sink(chunk)
            else:
                out.append(chunk)

        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in self.buf:
                    c = self.s.recv(65536)
                    if not c:
                        raise EOFError("EOF in chunked body")
                    self.buf += c
                line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while b"\r\n\r\n" not in b"\r\n" + self.buf:
                        c = self.s.recv(65536)
                        if not c:
                            raise EOFError("EOF in trailers")
                        self.buf += c
                    self.buf = (b"\r\n" + self.buf).split(b"\r\n\r\n", 1)[1]
                    break
                while len(self.buf) < size + 2:
                    c = self.s.recv(65536)
                    if not c:
                        raise EOFError("EOF in chunk")
                    self.buf += c
                take(self.buf[:size])
                self.buf = self.buf[size + 2:]
        elif "content-length" in hdrs:
            left = int(hdrs["content-length"])
            while left:
                c = self.recv(min(left, 65536))
                if not c:
                    raise EOFError(f"EOF with {left} body bytes missing")
                take(c)
                left -= len(c)
        else:
            while True:
                c = self.recv()
                if not c:
                    break
                take(c)
        return n if sink else b"".join(out)

    def request(self, method, path, host, extra=b"", body=None):
        req = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: snigate-soak\r\n".encode() + extra
        if body is not None:
            req += b"Content-Length: %d\r\n" % len(body)
        self.s.sendall(req + b"\r\n")
        if body is not None:
            self.s.sendall(body)
        status, hdrs = self.head()
        return status, hdrs, self.body(hdrs)


def tls_connect(port, ctx, sni, timeout=15, rcvbuf=None):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        raw.connect((HOST, port))
        return Conn(ctx.wrap_socket(raw, server_hostname=sni))
    except BaseException:
        raw.close()
        raise


class Pacer:
    """Sleeps so that calls to wait() happen `rate` times a second at most."""

    def __init__(self, rate):
        self.interval = 1.0 / rate if rate > 0 else 0
        self.next = time.monotonic()

    def wait(self):
        self.next += self.interval
        d = self.next - time.monotonic()
        if d > 0:
            STOP.wait(d)
        elif d < -1:
            self.next = time.monotonic()


def run_threads(a, st, target, n):
    ts = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    STOP.wait(a.duration if a.duration > 0 else None)
    STOP.set()
    for t in ts:
        t.join(timeout=3)
    st.dump(a.out)


def hosts_cycle(i):
    return ("a.test", "b.test")[i % 2]


# ------------------------------------------------------- soak: load generators
def role_keepalive(a, st):
    """--conns keep-alive connections, GET / in a loop, --rate requests/s in all."""
    ctx = client_ctx(a.ca)

    def worker(i):
        host = hosts_cycle(i)
        pacer = Pacer(a.rate / a.conns)
        c = None
        while not STOP.is_set():
            pacer.wait()
            if STOP.is_set():
                break
            t = time.time()
            try:
                if c is None:
                    c = tls_connect(a.port, ctx, host)
                    st.good("connect")
                status, _, body = c.request("GET", f"/ka/{i}", host)
                if status == 200 and body.startswith(b"hello from"):
                    st.good("get")
                else:
                    st.fail(f"status {status}", t, f"status {status} body {body[:60]!r}")
            except Exception as e:  # noqa: BLE001
                st.fail("get " + type(e).__name__, t, e)
                if c:
                    c.close()
                c = None
                STOP.wait(0.2)
        if c:
            c.close()

    run_threads(a, st, worker, a.conns)


def role_newconn(a, st):
    """A new TLS connection per request (Connection: close), --rate conn/s."""
    ctx = client_ctx(a.ca)
    ctx.options |= ssl.OP_NO_TICKET          # full handshakes (TLS 1.2 tickets; 1.3 tickets are never reused here)

    def worker(i):
        pacer = Pacer(a.rate / a.threads)
        k = i
        while not STOP.is_set():
            pacer.wait()
            if STOP.is_set():
                break
            k += a.threads
            host = hosts_cycle(k)
            t = time.time()
            c = None
            try:
                c = tls_connect(a.port, ctx, host)
                status, hdrs, body = c.request("GET", "/new", host, b"Connection: close\r\n")
                if status != 200 or not body.startswith(b"hello from"):
                    st.fail(f"status {status}", t, f"status {status}")
                    continue
                # the server must close after Connection: close
                if c.recv() != b"":
                    st.fail("not closed after Connection: close", t, "data after response")
                    continue
                st.good("conn+get")
            except Exception as e:  # noqa: BLE001
                st.fail("newconn " + type(e).__name__, t, e)
            finally:
                if c:
                    c.close()

    run_threads(a, st, worker, a.threads)


def role_nosni(a, st):
    """Clients without SNI (server_hostname None, or an IP address, which
    Python does not send as SNI): must get the fallback certificate (--expect-cert)
    and be routed by Host."""
    ctx = client_ctx(a.ca, verify_hostname=False)
    want = None
    if a.expect_cert:
        with open(a.expect_cert) as f:
            want = ssl.PEM_cert_to_DER_cert(f.read())

    def worker(i):
        pacer = Pacer(a.rate / a.threads)
        k = i
        while not STOP.is_set():
            pacer.wait()
            if STOP.is_set():
                break
            k += a.threads
            sni = None if k % 2 else HOST
            t = time.time()
            c = None
            try:
                c = tls_connect(a.port, ctx, sni)
                der = c.s.getpeercert(binary_form=True)
                if want is not None and der != want:
                    st.fail("wrong certificate without SNI", t, "not the fallback certificate")
                    continue
                for j in range(3):
                    host = hosts_cycle(k + j)
                    status, _, body = c.request("GET", f"/nosni/{j}", host)
                    if status == 200 and body.startswith(b"hello from"):
                        st.good("get")
                    else:
                        st.fail(f"status {status}", t, f"status {status}")
                        break
                st.good("conn")
            except Exception as e:  # noqa: BLE001
                st.fail("nosni " + type(e).__name__, t, e)
            finally:
                if c:
                    c.close()

    run_threads(a, st, worker, a.threads)


def tls10_client_hello(sni):
    """A ClientHello offering TLS 1.0 only (no supported_versions), CBC suites."""
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    groups = struct.pack("!HHHHH", 10, 6, 4, 0x0017, 0x001d)
    pointfmt = struct.pack("!HHBB", 11, 2, 1, 0)
    exts = sni_ext + groups + pointfmt
    suites = struct.pack("!HHHHH", 8, 0xc009, 0xc013, 0x002f, 0x0035)
    body = (b"\x03\x01" + os.urandom(32) + b"\x00" + suites + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def read_verdict(sock, timeout):
    """What the server did with a bad hello: 'alert', 'close', 'handshake' (it
    went on with the handshake), 'http' (it answered in plain HTTP) or 'timeout'."""
    sock.settimeout(timeout)
    try:
        d = sock.recv(4096)
    except socket.timeout:
        return "timeout"
    except ConnectionError:
        return "close"
    if not d:
        return "close"
    if d[0] == 0x15:
        return "alert"
    if d[0] == 0x16:
        return "handshake"
    if d.startswith(b"HTTP/"):
        return "http"
    return "other"


def role_badhello(a, st):
    """Failing ClientHellos, in turn: random bytes, plain HTTP on the TLS port,
    a TLS 1.0-only hello, a truncated hello then close, and a client that
    rejects the certificate (unknown CA).  Plus, every --silent-every seconds,
    a connection that sends nothing and must be closed by client_hello."""
    bad_ctx = ssl.create_default_context()   # system CAs: does not trust the lab CA
    kinds = ["garbage", "plainhttp", "tls10", "truncated", "unknownca"]

    def one(kind):
        t = time.time()
        s = None
        try:
            s = socket.create_connection((HOST, a.port), timeout=10)
            if kind == "garbage":
                s.sendall(os.urandom(517))
                v = read_verdict(s, 10)
                ok = v in ("alert", "close")
            elif kind == "plainhttp":
                s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
                v = read_verdict(s, 10)
                ok = v in ("alert", "close", "http")
            elif kind == "tls10":
                s.sendall(tls10_client_hello("a.test"))
                v = read_verdict(s, 10)
                ok = v in ("alert", "close")
            elif kind == "truncated":
                s.sendall(tls10_client_hello("b.test")[:40])
                v = "sent"
                ok = True
            else:  # unknownca: a real handshake the client aborts
                try:
                    ss = bad_ctx.wrap_socket(s, server_hostname="a.test")
                    ss.close()
                    v, ok = "handshake accepted", False
                except ssl.SSLCertVerificationError:
                    v, ok = "client rejected cert", True
                s = None
            if ok:
                st.fine(f"{kind}: {v}")
            else:
                st.fail(f"{kind} unexpected: {v}", t, f"server reaction {v}")
        except Exception as e:  # noqa: BLE001
            st.fail(f"{kind} {type(e).__name__}", t, e)
        finally:
            if s:
                s.close()

    def worker(i):
        pacer = Pacer(a.rate)
        k = 0
        while not STOP.is_set():
            pacer.wait()
            if STOP.is_set():
                break
            one(kinds[k % len(kinds)])
            k += 1

    def silent(i):
        while not STOP.wait(a.silent_every):
            t = time.time()
            s = None
            try:
                s = socket.create_connection((HOST, a.port), timeout=10)
                v = read_verdict(s, a.silent_limit)
                if v in ("close", "alert"):
                    st.fine(f"silent: {v} after {time.time() - t:.0f}s")
                else:
                    st.fail(f"silent unexpected: {v}", t, f"silent client: {v} within {a.silent_limit}s")
            except Exception as e:  # noqa: BLE001
                st.fail(f"silent {type(e).__name__}", t, e)
            finally:
                if s:
                    s.close()

    def both(i):
        (worker if i == 0 else silent)(i)

    run_threads(a, st, both, 2)


def role_upload(a, st):
    """Keep-alive uploads of --size bytes every --interval s: PUT with
    Content-Length and POST chunked in turn; the backend's byte count and
    CRC32 must match."""
    ctx = client_ctx(a.ca)
    data = os.urandom(a.size)
    crc = zlib.crc32(data)

    def worker(i):
        c = None
        k = i
        while not STOP.is_set():
            k += 1
            t = time.time()
            try:
                if c is None:
                    c = tls_connect(a.port, ctx, "a.test", timeout=30)
                if k % 2:
                    status, _, body = c.request("PUT", f"/upload/{k}", "a.test", body=data)
                    kind = "put"
                else:
                    head = (f"POST /upload/{k} HTTP/1.1\r\nHost: a.test\r\nUser-Agent: snigate-soak\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n").encode()
                    c.s.sendall(head)
                    for off in range(0, len(data), 65536):
                        piece = data[off:off + 65536]
                        c.s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    c.s.sendall(b"0\r\n\r\n")
                    status, hdrs = c.head()
                    body = c.body(hdrs)
                    kind = "post-chunked"
                if status != 200:
                    st.fail(f"{kind} status {status}", t, f"status {status}")
                else:
                    r = json.loads(body)
                    if r["len"] == len(data) and r["crc"] == crc:
                        st.good(kind, len(data))
                    else:
                        st.fail(f"{kind} corrupted", t, f"backend got {r['len']} bytes crc {r['crc']}")
            except Exception as e:  # noqa: BLE001
                st.fail("upload " + type(e).__name__, t, e)
                if c:
                    c.close()
                c = None
            STOP.wait(a.interval)
        if c:
            c.close()

    run_threads(a, st, worker, a.threads)


def role_slowread(a, st):
    """Downloads /big?size=--size at about --kib-per-s KiB/s (16 KiB reads),
    with a pause of --pause s in the middle of each (kept below client_send);
    every byte is checked.  These must never be cut."""
    ctx = client_ctx(a.ca)

    def worker(i):
        c = None
        while not STOP.is_set():
            t = time.time()
            be = None
            try:
                if c is None:
                    c = tls_connect(a.port, ctx, "b.test", timeout=30, rcvbuf=a.rcvbuf)
                c.s.sendall(f"GET /big?size={a.size} HTTP/1.1\r\nHost: b.test\r\nUser-Agent: snigate-soak-slow\r\n\r\n".encode())
                status, hdrs = c.head()
                be = hdrs.get("x-backend")
                if status != 200:
                    st.fail(f"status {status}", t, f"status {status}", be)
                    c.close()
                    c = None
                    continue
                left = int(hdrs["content-length"])
                off = 0
                step = 16384
                interval = step / (a.kib_per_s * 1024.0)
                nxt = time.monotonic()
                paused = False
                bad = False
                while left and not STOP.is_set():
                    chunk = c.recv(min(step, left))
                    if not chunk:
                        raise EOFError(f"cut after {off} of {a.size} bytes")
                    p = off % 256
                    if chunk != PAT[p:p + len(chunk)]:
                        bad = True
                    off += len(chunk)
                    left -= len(chunk)
                    if not paused and off >= a.size // 2:
                        paused = True
                        STOP.wait(a.pause)
                        nxt = time.monotonic()
                    nxt += len(chunk) / (a.kib_per_s * 1024.0)
                    d = nxt - time.monotonic()
                    if d > 0:
                        STOP.wait(min(d, interval * 4))
                if STOP.is_set():
                    break
                if bad:
                    st.fail("corrupted body", t, "body bytes differ from the pattern", be)
                else:
                    st.good("download", off)
            except Exception as e:  # noqa: BLE001
                st.fail("slowread " + type(e).__name__, t, e, be)
                if c:
                    c.close()
                c = None
                STOP.wait(1)
        if c:
            c.close()

    run_threads(a, st, worker, a.threads)


def role_stopread(a, st):
    """Every --every s: GET /big?size=--size, read --read-first bytes, then
    stop reading (small receive buffer) for --stall s (> client_send), then
    read on: snigate must have cut the response (EOF or reset before the end)."""
    ctx = client_ctx(a.ca)

    def worker(i):
        while not STOP.is_set():
            t = time.time()
            c = None
            be = None
            try:
                c = tls_connect(a.port, ctx, "a.test", timeout=30, rcvbuf=65536)
                c.s.sendall(f"GET /big?size={a.size} HTTP/1.1\r\nHost: a.test\r\nUser-Agent: snigate-soak-stop\r\n\r\n".encode())
                status, hdrs = c.head()
                be = hdrs.get("x-backend")
                if status != 200:
                    st.fail(f"status {status}", t, f"status {status}", be)
                else:
                    total = int(hdrs["content-length"])
                    got = 0
                    while got < a.read_first:
                        d = c.recv(65536)
                        if not d:
                            break
                        got += len(d)
                    if STOP.wait(a.stall):
                        break
                    outcome = None
                    try:
                        while got < total:
                            d = c.recv(65536)
                            if not d:
                                outcome = "eof"
                                break
                            got += len(d)
                    except (ConnectionError, ssl.SSLError) as e:
                        outcome = type(e).__name__
                    except socket.timeout:
                        outcome = "timeout"
                    if got >= total:
                        st.fail("not cut", t, f"whole {total}-byte response arrived despite a {a.stall}s stall", be)
                    elif outcome == "timeout":
                        st.fail("stalled", t, "neither data nor close after resuming", be)
                    else:
                        st.fine(f"cut ({outcome})")
                        st.good("drained", got)
            except Exception as e:  # noqa: BLE001
                st.fail("stopread " + type(e).__name__, t, e, be)
            finally:
                if c:
                    c.close()
            STOP.wait(max(0.0, a.every - a.stall))

    run_threads(a, st, worker, a.threads)


def role_idlers(a, st):
    """--threads connections, each: GET, stay idle a random time, then GET
    again when the idle time was below client_idle - 5 s (must still be
    open), or expect the server's close when it was above client_idle + 5 s."""
    ctx = client_ctx(a.ca)
    lim = a.client_idle

    def worker(i):
        rnd = random.Random(i)
        STOP.wait(rnd.uniform(0, 10))
        while not STOP.is_set():
            t = time.time()
            c = None
            host = hosts_cycle(i)
            try:
                c = tls_connect(a.port, ctx, host, timeout=lim + 30)
                status, _, _ = c.request("GET", f"/idle/{i}", host)
                if status != 200:
                    st.fail(f"status {status}", t, f"status {status}")
                    continue
                long_idle = rnd.random() < 0.3
                idle = rnd.uniform(lim + 5, lim + 20) if long_idle else rnd.uniform(2, max(3, lim - 5))
                if STOP.wait(idle):
                    break
                if long_idle:
                    c.s.settimeout(10)
                    try:
                        d = c.recv()
                        v = "close" if not d else "data"
                    except socket.timeout:
                        v = "still open"
                    except (ConnectionError, ssl.SSLError):
                        v = "close"
                    if v == "close":
                        st.fine("closed after client_idle")
                    else:
                        st.fail("not closed after client_idle", t, f"{v} after {idle:.0f}s idle")
                else:
                    status, _, body = c.request("GET", f"/idle/{i}", host)
                    if status == 200 and body.startswith(b"hello from"):
                        st.good("get after idle")
                    else:
                        st.fail(f"after idle status {status}", t, f"status {status}")
            except Exception as e:  # noqa: BLE001
                st.fail("idlers " + type(e).__name__, t, e)
            finally:
                if c:
                    c.close()

    run_threads(a, st, worker, a.threads)


ROLES = {"keepalive": role_keepalive, "newconn": role_newconn, "nosni": role_nosni,
         "badhello": role_badhello, "upload": role_upload, "slowread": role_slowread,
         "stopread": role_stopread, "idlers": role_idlers}


def run_role(a):
    st = Stats(a.cmd)
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    ROLES[a.cmd](a, st)


# --------------------------------------------------------------- soak summary
def linfit(xs, ys):
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def parse_metrics(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("#") or "_bucket{" in line or not line.strip():
                    continue
                k, _, v = line.rstrip().rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def summary(a):
    d = a.dir
    bad = 0
    kills = []           # (wall-clock time, backend) of each backend kill
    events = []
    with open(os.path.join(d, "events.log")) as f:
        for line in f:
            p = line.split()
            if len(p) >= 2:
                events.append((float(p[0]), " ".join(p[1:])))
                if p[1] == "kill":
                    kills.append((float(p[0]), p[2] if len(p) > 2 else None))
    t_start = events[0][0] if events else 0

    def near_kill(t0, t1, backend=None):
        # in flight when a backend was killed, or started at most a.kill_window s
        # after a kill; when the serving backend is known, it must be the one killed
        if backend:
            return any(t0 - 1 <= k <= t1 + 1 and b == backend for k, b in kills)
        return any(t0 - a.kill_window <= k <= t1 + 1 for k, _ in kills)

    print("== snigate soak summary ==")
    # ---- RSS / fds
    rows = []
    with open(os.path.join(d, "samples.csv")) as f:
        hdr = f.readline().strip().split(",")
        for line in f:
            v = line.strip().split(",")
            if len(v) == len(hdr):
                rows.append(dict(zip(hdr, v)))
    warm = [r for r in rows if float(r["elapsed_s"]) >= a.warmup]
    print(f"samples: {len(rows)} every {a.interval}s ({len(warm)} after the {a.warmup}s warm-up); csv: {os.path.join(d, 'samples.csv')}")
    if warm:
        rss = [int(r["rss_kib"]) for r in warm]
        fds = [int(r["fds"]) for r in warm]
        xs = [float(r["elapsed_s"]) / 60 for r in warm]
        slope = linfit(xs, rss)
        fslope = linfit(xs, fds)
        span = xs[-1] - xs[0]
        med = statistics.median(rss)
        print(f"RSS after warm-up: min {min(rss) / 1024:.1f} MiB, median {med / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB;"
              f" slope {slope:+.1f} KiB/min over {span:.1f} min ({slope * span:+.0f} KiB, {100 * slope * span / med:+.2f}% of median)")
        print(f"open fds after warm-up: min {min(fds)}, max {max(fds)} (slope {fslope:+.2f}/min);"
              f" whole run: min {min(int(r['fds']) for r in rows)}, max {max(int(r['fds']) for r in rows)}")
        print(f"RSS whole run: first sample {int(rows[0]['rss_kib']) / 1024:.1f} MiB, peak {max(int(r['rss_kib']) for r in rows) / 1024:.1f} MiB;"
              f" threads {min(int(r['threads']) for r in rows)}-{max(int(r['threads']) for r in rows)};"
              f" client connections {min(int(r['active_conns']) for r in rows)}-{max(int(r['active_conns']) for r in rows)}")
    else:
        print("RSS: no samples after the warm-up (run longer than the warm-up)")
    # ---- injected faults
    n_rel = sum(1 for _, e in events if e.startswith("reload"))
    n_rel_bad = sum(1 for _, e in events if e.startswith("reload") and "rc=0" not in e)
    print(f"faults injected: {len(kills)} backend kill(s) (" +
          ", ".join(f"{e.split()[1]} at +{t - t_start:.0f}s" for t, e in events if e.startswith("kill")) +
          f"), {n_rel} reload(s) sent ({n_rel_bad} with a non-zero exit)")
    bad += n_rel_bad
    # ---- generators
    print("load generators (ok = succeeded; expected = fault behaved as required; errors: near a backend kill / other):")
    for fn in sorted(os.listdir(d)):
        if not (fn.startswith("gen-") and fn.endswith(".json")):
            continue
        with open(os.path.join(d, fn)) as f:
            g = json.load(f)
        ev = g["error_events"]
        nk = sum(1 for e in ev if near_kill(e[0], e[1], e[4]))
        other = g["error_events_total"] - nk
        bad += other
        okstr = ", ".join(f"{k} {v}" for k, v in sorted(g["ok"].items())) or "-"
        exstr = ", ".join(f"{k} {v}" for k, v in sorted(g["expected"].items()))
        line = f"  {g['role']:9s} ok: {okstr}"
        if exstr:
            line += f"; expected: {exstr}"
        line += f"; errors: {nk} near a kill / {other} other"
        if g["bytes"]:
            line += f"; {g['bytes'] / 1048576:.0f} MiB verified"
        print(line)
        if g["errors"]:
            print("            error kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(g["errors"].items())))
        for e in [e for e in ev if not near_kill(e[0], e[1], e[4])][:5]:
            print(f"            unexpected at +{e[0] - t_start:.1f}s..+{e[1] - t_start:.1f}s: {e[2]}: {e[3]}"
                  + (f" (backend {e[4]})" if e[4] else ""))
    missing = [r for r in a.roles.split(",") if not os.path.exists(os.path.join(d, f"gen-{r}.json"))]
    if missing:
        print(f"  MISSING generator reports: {', '.join(missing)}")
        bad += len(missing)
    # ---- access log
    backends = {}                   # "127.0.0.1:PORT" -> b1 / b2
    for bk in ("b1", "b2"):
        port = os.environ.get(f"SOAK_{bk.upper()}_PORT")
        if port:
            backends[f"127.0.0.1:{port}"] = bk
    status, errs, n_al, al_unexp = {}, {}, 0, []
    try:
        with open(os.path.join(d, "access.jsonl")) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("event") != "http_request":
                    continue
                n_al += 1
                s = r.get("status")
                status[s] = status.get(s, 0) + 1
                e = r.get("error")
                if e:
                    key = e
                    for w in ("client_send", "upstream_read", "client_idle"):
                        if w in e:
                            key = w
                    key = key[:90]
                    errs[key] = errs.get(key, 0) + 1
                if (s and s >= 500) or e:
                    ts = calendar.timegm(time.strptime(r["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + r["ts"][19:23])
                    t1 = ts + (r.get("ms") or 0) / 1000.0
                    expected = (near_kill(ts, t1, backends.get(r.get("server"))) or
                                (e and "client_send" in e and (r.get("user_agent") or "").endswith("-stop")))
                    if not expected:
                        al_unexp.append(f"+{ts - t_start:.1f}s status {s} {r.get('method')} {r.get('path')}: {e}")
    except OSError:
        pass
    print(f"access log: {n_al} requests; by status: " + ", ".join(f"{k} {v}" for k, v in sorted(status.items(), key=lambda x: str(x[0]))))
    if errs:
        print("  errors: " + "; ".join(f"{k} x{v}" for k, v in sorted(errs.items(), key=lambda x: -x[1])))
    print(f"  5xx or error lines not explained by a backend kill or by the stopped reader (client_send): {len(al_unexp)}")
    for x in al_unexp[:5]:
        print("    " + x)
    bad += len(al_unexp)
    # ---- metrics
    m = parse_metrics(os.path.join(d, "metrics-end.txt"))
    if m:
        print("metrics at the end (non-zero):")
        for prefix in ("snigate_requests_total", "snigate_handshakes_total", "snigate_fallback_certificate_served_total",
                       "snigate_tls_key_exchange_total", "snigate_reloads_total", "snigate_config_generation",
                       "snigate_upstream_server_up", "snigate_active_connections", "snigate_log_lines_dropped_total",
                       "snigate_connections_refused_total",
                       "snigate_ntlm_pinned_connections"):
            for k in sorted(x for x in m if x.startswith(prefix + "{") or x == prefix):
                if m[k] or prefix in ("snigate_upstream_server_up", "snigate_log_lines_dropped_total"):
                    print(f"  {k} {m[k]:.0f}")
        rel_ok = m.get('snigate_reloads_total{outcome="ok"}', 0)
        rel_failed = m.get('snigate_reloads_total{outcome="failed"}', 0)
        if rel_ok != n_rel or rel_failed:
            print(f"  RELOADS: sent {n_rel}, ok {rel_ok:.0f}, failed {rel_failed:.0f}")
            bad += 1
        refused = sum(v for k, v in m.items() if k.startswith("snigate_connections_refused_total"))
        if refused:
            print(f"  CONNECTIONS REFUSED: {refused:.0f}")
            bad += 1
        dropped = m.get("snigate_log_lines_dropped_total", 0)
        if dropped:
            print(f"  LOG LINES DROPPED: {dropped:.0f}")
    else:
        print("metrics: none scraped")
        bad += 1
    # ---- snigate's own log
    try:
        with open(os.path.join(d, "snigate.log")) as f:
            lv = {}
            msgs = {}
            for line in f:
                line = ANSI.sub("", line)
                for level in ("ERROR", "WARN"):
                    if f" {level} " in line[:60]:
                        lv[level] = lv.get(level, 0) + 1
                        msg = line.split(f" {level} ", 1)[1].strip()
                        msg = "".join("#" if ch.isdigit() else ch for ch in msg)[:110]
                        msgs[(level, msg)] = msgs.get((level, msg), 0) + 1
        print("snigate log: " + (", ".join(f"{k} {v}" for k, v in sorted(lv.items())) or "no WARN/ERROR lines"))
        for (level, msg), n in sorted(msgs.items(), key=lambda x: -x[1])[:8]:
            print(f"  {n:6d} x {level} {msg}")
    except OSError:
        pass
    ex = 0
    p = os.path.join(d, "snigate.exit")
    if os.path.exists(p):
        with open(p) as f:
            ex = f.read().strip()
        print(f"snigate exit after SIGTERM: {ex}")
        if ex != "0":
            bad += 1
    print(f"VERDICT: {'OK' if bad == 0 else 'PROBLEMS'}: {bad} unexpected error(s)/check failure(s)")
    return 0 if bad == 0 else 1


# ------------------------------------------------------------------------ main
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backend")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--name", default="backend")
    i = sub.add_parser("idle")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--ca", required=True)
    i.add_argument("--sni", default="a.test")
    i.add_argument("-n", type=int, default=10000)
    i.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    i.add_argument("--req-concurrency", type=int, default=100, help="requests in flight in phase 2")
    i.add_argument("--settle", type=float, default=2.0)
    i.add_argument("--wait", type=float, default=600.0, help="longest wait for the go/close files")
    i.add_argument("--ctl", required=True)
    i.add_argument("--h2", action="store_true", help="ALPN h2: each request on stream 1 of its connection")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--port", type=int, required=True)
    common.add_argument("--ca", required=True)
    common.add_argument("--out", required=True)
    common.add_argument("--duration", type=float, default=0, help="seconds; 0: until SIGTERM")
    r = sub.add_parser("keepalive", parents=[common])
    r.add_argument("--conns", type=int, default=8)
    r.add_argument("--rate", type=float, default=150)
    r = sub.add_parser("newconn", parents=[common])
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--rate", type=float, default=15)
    r = sub.add_parser("nosni", parents=[common])
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--rate", type=float, default=4)
    r.add_argument("--expect-cert")
    r = sub.add_parser("badhello", parents=[common])
    r.add_argument("--rate", type=float, default=2)
    r.add_argument("--silent-every", type=float, default=30)
    r.add_argument("--silent-limit", type=float, default=20, help="client_hello timeout + margin")
    r = sub.add_parser("upload", parents=[common])
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--size", type=int, default=4 << 20)
    r.add_argument("--interval", type=float, default=2)
    r = sub.add_parser("slowread", parents=[common])
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--size", type=int, default=16 << 20)
    r.add_argument("--kib-per-s", type=float, default=256)
    r.add_argument("--pause", type=float, default=2.0)
    r.add_argument("--rcvbuf", type=int, default=131072)
    r = sub.add_parser("stopread", parents=[common])
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--size", type=int, default=32 << 20)
    r.add_argument("--read-first", type=int, default=1 << 20)
    r.add_argument("--stall", type=float, default=15)
    r.add_argument("--every", type=float, default=30)
    r = sub.add_parser("idlers", parents=[common])
    r.add_argument("--threads", type=int, default=20)
    r.add_argument("--client-idle", type=float, default=60)
    s = sub.add_parser("summary")
    s.add_argument("--dir", required=True)
    s.add_argument("--warmup", type=float, default=120)
    s.add_argument("--interval", type=float, default=10)
    s.add_argument("--kill-window", type=float, default=5)
    s.add_argument("--roles", default=",".join(ROLES))
    a = p.parse_args()
    if a.cmd == "backend":
        asyncio.run(backend_main(a))
    elif a.cmd == "idle":
        asyncio.run(idle_main(a))
    elif a.cmd == "summary":
        sys.exit(summary(a))
    else:
        run_role(a)


if __name__ == "__main__":
    main()
