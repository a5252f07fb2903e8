#!/bin/sh
# flunky.sh: the node agent for ramdisks without Python (busybox or curl).
#
#   flunky.sh [-S URL] [--cmdline FILE] [--retry-max SECONDS] -i MSG | -e MSG | -g PATH | -x PATH
#
# Same flags and behaviour as flunky.py: -i/-e post a progress/error
# message, -g prints a file of the appliance, -x fetches one, runs it and
# exits with its status; any failure exits 255. Without -S the server is
# flunky=<url> of the kernel command line. An unreachable server is retried
# with backoff for --retry-max seconds. Requests carry ?mac= so the node
# stays itself if its address changes.
#
# POSIX sh; needs curl or wget (busybox's will do), and cat, chmod, mktemp,
# rm, sed and sleep. The appliance serves this file at /flunky.sh.

FAILURE=255
MAX_DELAY=30
cmdline=${FLUNKY_CMDLINE:-/proc/cmdline}
retry_max=${FLUNKY_RETRY_MAX:-300}
server='' action='' target=''

usage() {
    echo "usage: flunky.sh [-S URL] [--cmdline FILE] [--retry-max SECONDS]" \
         "-i MSG | -e MSG | -g PATH | -x PATH" >&2
    exit $FAILURE
}

die() {
    echo "flunky: $*" >&2
    exit $FAILURE
}

while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case $1 in
        -S) server=$2 ;;
        --cmdline) cmdline=$2 ;;
        --retry-max) retry_max=$2 ;;
        -i|-e|-g|-x)
            [ -z "$action" ] || die "give only one of -i, -e, -g, -x"
            action=$1 target=$2 ;;
        *) usage ;;
    esac
    shift 2
done
[ -n "$action" ] || usage
case $retry_max in
    ''|*[!0-9]*) die "--retry-max must be whole seconds, not '$retry_max'" ;;
esac

server_from_cmdline() {
    set -f  # the words of the command line are not file patterns
    while IFS= read -r line || [ -n "$line" ]; do
        for word in $line; do
            case $word in
                flunky=*) set +f; printf '%s\n' "${word#flunky=}"; return 0 ;;
            esac
        done
    done < "$1"
    set +f
    return 1
}

default_route_interface() {
    [ -r /proc/net/route ] || return 0
    while read -r device destination _gateway flags _rest; do
        if [ "$destination" = 00000000 ] && [ $((0x$flags & 1)) -eq 1 ]; then
            printf '%s\n' "$device"
            return 0
        fi
    done < /proc/net/route
}

# $FLUNKY_MAC if set (empty: none), else the MAC of the default route's
# interface, else of the first interface that is up and not loopback.
node_mac() {
    if [ -n "${FLUNKY_MAC+set}" ]; then
        printf '%s\n' "$FLUNKY_MAC"
        return 0
    fi
    for device in $(default_route_interface) /sys/class/net/*; do
        device=/sys/class/net/${device##*/}
        read -r flags 2>/dev/null < "$device/flags" || continue
        read -r mac 2>/dev/null < "$device/address" || continue
        # IFF_UP set, IFF_LOOPBACK not
        [ $((flags & 9)) -eq 1 ] || continue
        case $mac in
            ''|00:00:00:00:00:00) continue ;;
        esac
        printf '%s\n' "$mac"
        return 0
    done
}

json_string() {
    printf '%s\n' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' | {
        joined='' separator=''
        while IFS= read -r line; do
            joined=$joined$separator$line
            separator='\n'
        done
        printf '"%s"' "$joined"
    }
}

first_line() {
    IFS= read -r line < "$1"
    printf '%s\n' "$line"
}

# GNU wget: one try per attempt (we do the retrying), a connect timeout, and
# keep the server's reason for an HTTP error. Busybox wget lacks these, and
# Debian 12's static busybox wget crashes on -T.
case $(wget --help 2>&1) in
    *--content-on-error*) gnu_wget="--tries=1 --timeout=10 --content-on-error" ;;
    *) gnu_wget= ;;
esac

# One attempt: the answer into $answer; 0 done, 1 HTTP error (said why),
# 2 unreachable ($reason says why).
http_once() {
    if command -v curl >/dev/null 2>&1; then
        if [ -n "$2" ]; then
            set -- "$1" -H "Content-Type: application/json" --data-binary "$2"
        fi
        code=$(curl -sS --connect-timeout 10 -o "$answer" -w '%{http_code}' "$@" 2>"$errors") || {
            reason=$(first_line "$errors")
            return 2
        }
        [ "$code" -lt 400 ] && return 0
        echo "flunky: $1: HTTP $code: $(first_line "$answer")" >&2
        return 1
    fi
    if [ -n "$2" ]; then
        set -- "$1" --header "Content-Type: application/json" --post-data "$2"
    fi
    : > "$answer"
    # -S: the status line tells an HTTP error from an unreachable server.
    # shellcheck disable=SC2086  # $gnu_wget is a list of options
    wget $gnu_wget -q -S -O "$answer" "$@" 2>"$errors" && return 0
    status=$?
    code=$(sed -n 's/.*HTTP\/[0-9.]* \([0-9][0-9]*\).*/\1/p' "$errors" | sed -n '$p')
    if [ -n "$code" ] && [ "$code" -ge 400 ]; then
        [ -s "$answer" ] || sed -n 's/.*HTTP\/[0-9.]* [0-9]* *//p' "$errors" > "$answer"
        echo "flunky: $1: HTTP $code: $(first_line "$answer")" >&2
        return 1
    fi
    reason=$(first_line "$errors")
    reason=${reason:-"wget failed with status $status"}
    return 2
}

# URL [BODY]: retry with exponential backoff while the server is unreachable.
request() {
    waited=0 delay=1
    while :; do
        http_once "$@"
        case $? in
            0) return 0 ;;
            1) exit $FAILURE ;;
        esac
        [ "$waited" -lt "$retry_max" ] ||
            die "cannot reach $server: $reason (gave up after ${waited}s)"
        pause=$delay
        [ $((waited + pause)) -le "$retry_max" ] || pause=$((retry_max - waited))
        echo "flunky: cannot reach $server ($reason), retrying in ${pause}s" >&2
        sleep "$pause"
        waited=$((waited + pause)) delay=$((delay * 2))
        [ "$delay" -le $MAX_DELAY ] || delay=$MAX_DELAY
    done
}

if [ -z "$server" ]; then
    [ -r "$cmdline" ] || die "no -S URL and cannot read $cmdline"
    server=$(server_from_cmdline "$cmdline") || die "no -S URL and no flunky=<url> in $cmdline"
fi
server=${server%/}

answer=$(mktemp) || die "cannot create a temporary file"
errors=$(mktemp) || die "cannot create a temporary file"
trap 'rm -f "$answer" "$errors"' EXIT

url_of() {
    path=/${1#/}
    mac=$(node_mac)
    case $path in
        *\?*) separator='&' ;;
        *) separator='?' ;;
    esac
    printf '%s\n' "$server$path${mac:+$separator}${mac:+mac=$mac}"
}

case $action in
    -i) request "$(url_of info)" "{\"Message\": $(json_string "$target")}" ;;
    -e) request "$(url_of error)" "{\"Message\": $(json_string "$target")}" ;;
    -g) request "$(url_of "$target")" && cat "$answer" ;;
    -x)
        request "$(url_of "$target")"
        chmod 700 "$answer" || die "cannot make $answer executable"
        "$answer"
        status=$?
        rm -f "$answer"
        exit $status
        ;;
esac
