#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/.

Run from the repository root: python3 fuzz/seeds/make_corpus.py
The seeds come from tests/data/ (ClientHello captures, IIS inputs), config/,
the README's TOML examples, and hand-made PROXY headers and HTTP requests.
Files the fuzzer added to the corpus (named by their SHA-1) are kept.
"""
import hashlib
import ipaddress
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def hexfiles():
    for folder in ["tests/data/hellos", "tests/data/fingerprints"]:
        for p in sorted((ROOT / folder).glob("*.hex")):
            yield p


# --- client_hello and explain -------------------------------------------------
for p in hexfiles():
    text = p.read_text()
    raw = bytes.fromhex("".join(text.split()))
    stem = p.name[: -len(".hex")]
    put("client_hello", stem, raw)
    put("explain", stem + ".hex", text)

win10 = bytes.fromhex("".join((ROOT / "tests/data/hellos/win10_ie11_schannel_tls12.hex").read_text().split()))
msg = win10[5:]
# The same hello in two records, then followed by more bytes.
cut = 40
two = b"\x16\x03\x01" + struct.pack(">H", cut) + msg[:cut] + b"\x16\x03\x01" + struct.pack(">H", len(msg) - cut) + msg[cut:]
put("client_hello", "seed-two-records", two)
put("client_hello", "seed-trailing-bytes", win10 + b"\x17\x03\x03\x00\x01\x00")
put("client_hello", "seed-plain-http", b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
put("client_hello", "seed-header-only", win10[:9])
# explain: raw bytes, a bare handshake message, hex with line breaks.
put("explain", "seed-raw.bin", win10)
put("explain", "seed-bare-message.hex", msg.hex())
put("explain", "seed-wrapped-lines.hex", "\n".join(win10.hex()[i : i + 32] for i in range(0, len(win10) * 2, 32)) + "\n")
put("explain", "seed-odd-digits.hex", win10.hex()[:-1])

# --- proxy_protocol and proxy_protocol_read -------------------------------------
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command, family, payload):
    return SIG + bytes([0x20 | command, family]) + struct.pack(">H", len(payload)) + payload


def tlv(t, value):
    return bytes([t]) + struct.pack(">H", len(value)) + value


v4 = ipaddress.IPv4Address("192.0.2.10").packed + ipaddress.IPv4Address("198.51.100.1").packed + struct.pack(">HH", 56324, 443)
v6 = ipaddress.IPv6Address("2001:db8::1").packed + ipaddress.IPv6Address("2001:db8::2").packed + struct.pack(">HH", 56324, 443)
mapped = ipaddress.IPv6Address("::ffff:192.0.2.10").packed + ipaddress.IPv6Address("2001:db8::2").packed + struct.pack(">HH", 1, 65535)
unix = b"/var/run/src.sock".ljust(108, b"\0") + b"/var/run/dst.sock".ljust(108, b"\0")
ssl = tlv(0x20, b"\x07" + b"\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client.example") + tlv(0x23, b"TLS_AES_128_GCM_SHA256"))
headers = {
    "v1-tcp4": b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n",
    "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
    "v1-unknown": b"PROXY UNKNOWN\r\n",
    "v1-unknown-longest": b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    "v1-mapped": b"PROXY TCP6 ::ffff:192.0.2.10 2001:db8::2 1 65535\r\n",
    "v2-tcp4": v2(1, 0x11, v4),
    "v2-tcp6": v2(1, 0x21, v6),
    "v2-tcp6-mapped": v2(1, 0x21, mapped),
    "v2-udp4": v2(1, 0x12, v4),
    "v2-local": v2(0, 0x00, b""),
    "v2-unspec-proxy": v2(1, 0x00, b""),
    "v2-unix": v2(1, 0x31, unix),
    "v2-tcp4-tlvs": v2(1, 0x11, v4 + tlv(0x01, b"h2") + tlv(0x02, b"portal.contoso.test") + tlv(0x04, b"") + tlv(0x05, b"\x01\x02\x03\x04") + ssl + tlv(0xEA, b"\x01vpce-0123456789abcdef") + tlv(0x03, b"\x00\x00\x00\x00")),
    "v2-tcp6-noop": v2(1, 0x21, v6 + tlv(0x04, b"\0" * 32)),
}
for name, h in headers.items():
    put("proxy_protocol", "seed-" + name, h)
    put("proxy_protocol_read", "seed-" + name, h)
put("proxy_protocol_read", "seed-v1-then-hello", headers["v1-tcp4"] + win10)
put("proxy_protocol_read", "seed-v2-then-hello", headers["v2-tcp4-tlvs"] + win10)
put("proxy_protocol_read", "seed-v2-local-then-http", headers["v2-local"] + b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
put("proxy_protocol_read", "seed-hello-without-header", win10)
put("proxy_protocol_read", "seed-http-without-header", b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")

# --- config ---------------------------------------------------------------------
for p in sorted((ROOT / "config").glob("*.toml")):
    put("config", "seed-" + p.name, p.read_text())
readme = (ROOT / "README.md").read_text()
for i, block in enumerate(re.findall(r"```toml\n(.*?)```", readme, re.S)):
    put("config", f"seed-readme-{i}.toml", block)
# Files the fuzz fixture holds (fallback.crt/.key, ca.crt): these get checked too.
put("config", "seed-fixture-certificates.toml", """\
[runtime]
workers = 1

[log]
level = "warn"
format = "json"

[timeouts]
client_hello = "2s"
handshake = "250ms"
client_header = "5s"
proxy_header = "1s"

[[certificate]]
name = "farm"
chain = "fallback.crt"
key = "fallback.key"
names = ["portal.contoso.test", "*.apps.contoso.test"]

[[certificate]]
name = "portal"
chain = "portal.contoso.test.crt"
key = "portal.contoso.test.key"

[[listener]]
name = "main"
bind = ["127.0.0.1:8443", "[::1]:8443"]
fallback_certificate = "farm"
strict_sni = false
default_upstream = "portal"
alpn = ["h2", "http/1.1"]
proxy_protocol = true
trusted_proxies = ["127.0.0.0/8", "::1/128"]
max_connections = 100
legacy_upstream = "legacy"
max_header_bytes = 65536
max_headers = 100
max_concurrent_streams = 50

[[listener]]
name = "pt"
bind = ["127.0.0.1:8444"]
mode = "passthrough"
default_upstream = "legacy"

[[route]]
hosts = ["portal.contoso.test", "*.apps.contoso.test"]
listeners = ["main"]
upstream = "portal"

[[upstream]]
name = "portal"
servers = ["127.0.0.1:8080", "localhost:8081"]
balance = "least-conn"
tls = { server_name = "portal.contoso.test", ca = "ca.crt" }
health = { path = "/", interval = "5s", timeout = "2s", expect_status = 200 }
max_fails = 3
fail_timeout = "10s"

[[upstream]]
name = "legacy"
servers = ["127.0.0.1:8443"]
balance = "ip-hash"
send_proxy_protocol = "v2"
""")
put("config", "seed-pinned-upstream.toml", """\
[[certificate]]
name = "farm"
chain = "fallback.crt"
key = "fallback.key"

[[listener]]
name = "main"
bind = ["127.0.0.1:8443"]
fallback_certificate = "farm"
default_upstream = "portal"
session_ticket_keys = "tickets.key"

[[upstream]]
name = "portal"
servers = ["127.0.0.1:8443"]
tls = { pin_sha256 = ["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="] }
""")
put("config", "seed-errors.toml", """\
[runtime]
workers = -1
unknown = 1

[[listener]]
name = "main"
bind = ["not an address"]
mode = "ftp"
fallback_certificate = "missing"

[[route]]
hosts = ["*.*.bad", ""]
upstream = "nowhere"

[[upstream]]
name = "portal"
servers = []
balance = "random"
health = { path = "no-slash", interval = "0s" }
""")

# --- import_iis -----------------------------------------------------------------
for p in sorted((ROOT / "tests/data/iis").iterdir()):
    if p.name != "SOURCES.md":
        put("import_iis", p.name, p.read_bytes())

# --- http1 ----------------------------------------------------------------------
requests = {
    "get": b"GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: fuzz\r\n\r\n",
    "get-close": b"GET /x?y=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    "http10": b"GET / HTTP/1.0\r\n\r\n",
    "pipelined": b"GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: x.w.test\r\n\r\nHEAD /3 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    "post-length": b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world",
    "post-chunked": b"POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
    "post-short-body": b"PUT /f HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000\r\n\r\nabc",
    "expect-continue": b"PUT /f HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
    "propfind": b"PROPFIND /sites/docs HTTP/1.1\r\nHost: a.test\r\nDepth: 1\r\nContent-Type: text/xml\r\nContent-Length: 97\r\n\r\n<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind>                    ",
    "lock-move": b"LOCK /a HTTP/1.1\r\nHost: a.test\r\nTimeout: Second-3600\r\nContent-Length: 0\r\n\r\nMOVE /a HTTP/1.1\r\nHost: a.test\r\nDestination: http://a.test/b\r\nOverwrite: T\r\n\r\n",
    "custom-method": b"X-MS-ENUMATTS /x HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "crash-two-host-headers": b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    "crash-absolute-target-names-another-host": b"GET http://x.w.test/p HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "absolute-target-same": b"GET http://a.test:80/p HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "authority-form": b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
    "asterisk": b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "dead-upstream": b"GET / HTTP/1.1\r\nHost: dead.test\r\n\r\n",
    "ntlm": b"GET / HTTP/1.1\r\nHost: a.test\r\nAuthorization: NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\nAuthorization: Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnag\r\n\r\n",
    "upgrade-websocket": b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "upgrade-h2c": b"GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    "forwarded-headers": b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.1.1.1\r\n\r\n",
    "hop-by-hop": b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Long: a\r\n b\r\n\r\n",
    "lf-only": b"GET / HTTP/1.1\nHost: a.test\n\n",
    "cl-and-te": b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-lengths": b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "host-with-port-and-case": b"GET / HTTP/1.1\r\nHost: A.TEST:8080\r\n\r\n",
    "host-ipv6": b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
    "garbage": b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
}
for name, r in requests.items():
    # crash-*: inputs that found a bug (tests/it/fuzz_corpus.rs lists the open ones).
    put("http1", name if name.startswith("crash-") else "seed-" + name, r)
