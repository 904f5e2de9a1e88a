#!/usr/bin/env bash
# The README's screenshot of the report page (deploy/report/report-1280.png),
# from real traffic through the real aggregation:
#
#   1. starts `snigate demo` (127.0.0.1:8443, 127.0.0.2:8443, admin on
#      127.0.0.1:9900; certificates in a temporary folder);
#   2. sends it a small mix of clients: curl with SNI on the three sites,
#      WebDAV mini-redirector User-Agents without SNI (Windows 7 and 10
#      builds), Outlook without SNI on the IP/port-mapped listener, and the
#      captured hellos of Windows XP, Java 6 and Android 2.3
#      (tests/data/hellos), which fail for want of TLS 1.2;
#   3. takes a 1280x1500 screenshot of GET /report.html sorted by most
#      handshakes (#sort=handshakes-desc) with Debian's headless chromium
#      (apt-get install chromium), then stops the demo.
#
#   deploy/report/screenshot.sh [OUT.png]     (default deploy/report/report-1280.png)
#
# Needs target/release/snigate (cargo build --release), curl, python3 and
# the demo's ports free.
set -euo pipefail

cd "$(dirname "$0")/../.."
out=${1:-deploy/report/report-1280.png}
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
    echo "chromium is not installed: apt-get install chromium" >&2
    exit 1
fi
bin=target/release/snigate
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d)
setsid "$bin" demo --dir "$work/demo" >"$work/demo.log" 2>&1 &
demo=$!
trap 'kill -- -"$demo" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -sf -o /dev/null http://127.0.0.1:9900/healthz && break
    sleep 0.1
done
curl -sf -o /dev/null http://127.0.0.1:9900/healthz || { cat "$work/demo.log" >&2; exit 1; }

ca=$work/demo/ca.crt
for site in portal.contoso.test team.apps.contoso.test mysites.contoso.test; do
    for _ in 1 2 3; do
        curl -s -o /dev/null --cacert "$ca" --resolve "$site:8443:127.0.0.1" \
            -A 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0' \
            "https://$site:8443/"
    done
done
for ua in 'Microsoft-WebDAV-MiniRedir/6.1.7601' 'Microsoft-WebDAV-MiniRedir/10.0.19045'; do
    for _ in 1 2 3 4; do
        curl -s -o /dev/null -k -X PROPFIND -H 'Depth: 0' -H 'Host: portal.contoso.test' -A "$ua" https://127.0.0.1:8443/
    done
done
curl -s -o /dev/null -k -A 'Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)' https://127.0.0.2:8443/
python3 - tests/data/hellos <<'PY'
import pathlib, socket, sys
for name in ["xp_ie8_schannel_tls10_nosni", "java6u45_sslv2hello_nosni", "android237_tls10_nosni"]:
    text = (pathlib.Path(sys.argv[1]) / f"{name}.hex").read_text()
    hello = bytes.fromhex("".join(c for c in text if c in "0123456789abcdefABCDEF"))
    with socket.create_connection(("127.0.0.1", 8443), timeout=5) as s:
        s.sendall(hello)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
PY

timeout -k 5 60 "$chromium" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-extensions --hide-scrollbars --user-data-dir="$work/profile" \
    --window-size=1280,1500 --virtual-time-budget=5000 \
    --screenshot="$out" "http://127.0.0.1:9900/report.html#sort=handshakes-desc" >/dev/null 2>&1
echo "$out: $(stat -c %s "$out") bytes"
