#!/usr/bin/env bash
# The README's screenshot of the report page (deploy/report/report-1280.png).
#
# Renders the demo report, a working day of a SharePoint farm made by hand
# in tests/it/report_page.rs (the WebDAV mini-redirector without SNI on a
# host the fallback certificate does not cover, Windows XP failing with its
# fix, a browser and Outlook with SNI, a hostile scanner), with the same
# render_html as GET /report.html, sorts it by failed handshakes (#sort=failed-desc)
# and takes a 1280x1100 screenshot of it with
# Debian's headless chromium (apt-get install chromium). The browser test
# that writes the page also checks it: script, sorting, 1280 px and phone.
#
#   deploy/report/screenshot.sh [OUT.png]     (default deploy/report/report-1280.png)
set -euo pipefail

cd "$(dirname "$0")/../.."
out=${1:-deploy/report/report-1280.png}
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
    echo "chromium is not installed: apt-get install chromium" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
page=$work/report.html

SNIGATE_REPORT_DEMO_PAGE=$page cargo test --release --quiet --test it -- \
    --exact report_page::page_in_a_real_browser_sorts_under_its_csp_and_fits_a_laptop_and_a_phone \
    >"$work/test.log" 2>&1 || { cat "$work/test.log" >&2; exit 1; }
[ -s "$page" ] || { echo "the test wrote no page" >&2; exit 1; }

timeout -k 5 60 "$chromium" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-extensions --hide-scrollbars --user-data-dir="$work/profile" \
    --window-size=1280,1100 --virtual-time-budget=5000 \
    --screenshot="$out" "file://$page#sort=failed-desc" >/dev/null 2>&1
echo "$out: $(stat -c %s "$out") bytes"
