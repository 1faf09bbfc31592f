# Sourced by load.sh and callgrind.sh: turns REQUEST_HEADERS into wrk/oha arguments.
#   minimal (default)  wrk's own request, Host only
#   browser            the headers a browser sends on a page load (browser-headers.txt)
# Sets REQUEST_HEADERS (normalized) and the array HDR_ARGS (-H "Name: value" pairs).
REQUEST_HEADERS=${REQUEST_HEADERS:-minimal}
HDR_ARGS=()
case "$REQUEST_HEADERS" in
minimal) ;;
browser)
    while IFS= read -r h; do
        [[ -n "$h" ]] && HDR_ARGS+=(-H "$h")
    done <"$(dirname "${BASH_SOURCE[0]}")/browser-headers.txt"
    ;;
*)
    echo "REQUEST_HEADERS must be minimal or browser, not '$REQUEST_HEADERS'" >&2
    exit 2
    ;;
esac
