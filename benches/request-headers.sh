# Sourced by load.sh and callgrind.sh: turns REQUEST_HEADERS into wrk/oha arguments.
#   minimal (default)  wrk's own request, Host only
#   browser            the headers a browser sends on a page load (browser-headers.txt)
#   6, 12, 24 (any N from 2 to 64)
#                      N header fields in all: Host, then the browser's (in file order), then
#                      X-Extra-K: value-K fields up to N (for how header-table growth scales)
# Sets REQUEST_HEADERS (normalized) and the array HDR_ARGS (-H "Name: value" pairs).
REQUEST_HEADERS=${REQUEST_HEADERS:-minimal}
HDR_ARGS=()
_hdr_file="$(dirname "${BASH_SOURCE[0]}")/browser-headers.txt"
case "$REQUEST_HEADERS" in
minimal) ;;
browser)
    while IFS= read -r h; do
        [[ -n "$h" ]] && HDR_ARGS+=(-H "$h")
    done <"$_hdr_file"
    ;;
[0-9] | [0-9][0-9])
    if ((REQUEST_HEADERS < 2 || REQUEST_HEADERS > 64)); then
        echo "REQUEST_HEADERS as a count must be 2..64, not '$REQUEST_HEADERS'" >&2
        exit 2
    fi
    # wrk sends Host itself: N - 1 more
    _want=$((REQUEST_HEADERS - 1))
    while IFS= read -r h && ((${#HDR_ARGS[@]} / 2 < _want)); do
        [[ -n "$h" ]] && HDR_ARGS+=(-H "$h")
    done <"$_hdr_file"
    _k=1
    while ((${#HDR_ARGS[@]} / 2 < _want)); do
        HDR_ARGS+=(-H "X-Extra-$_k: value-$_k")
        _k=$((_k + 1))
    done
    ;;
*)
    echo "REQUEST_HEADERS must be minimal, browser or a header count (2..64), not '$REQUEST_HEADERS'" >&2
    exit 2
    ;;
esac
unset _hdr_file _want _k
