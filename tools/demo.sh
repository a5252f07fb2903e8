#!/bin/sh
# The HTTP side of the main job on this host, no root needed: start the
# appliance (HTTP only) on a copy of the example repository, allocate this
# host as a node, and do what a netbooting node does over HTTP (bootconfig,
# install, progress messages, second boot).
set -eu
work=$(mktemp -d /tmp/heckle-demo.XXXXXX)
# A free port of our own unless told otherwise: never talk to an appliance
# that is already running here.
port=${DEMO_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
mkdir "$work/repository"
(cd repository && tar -cf - --exclude=./data.json --exclude='./data.json.*' \
     --exclude=./flunky.log --exclude=./.flunkymaster.lock --exclude=./static/demo .) |
    tar -xf - -C "$work/repository"
server="http://127.0.0.1:$port"
if curl -s -o /dev/null "$server/"; then
    echo "demo: something already answers on port $port; set DEMO_PORT to a free port" >&2
    exit 1
fi

flunkymaster --repository "$work/repository" --address 127.0.0.1 --listen 127.0.0.1 \
    --http-port "$port" --tftp-port 0 --dhcp-port 0 --pxe-port 0 --quiet &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
until curl -s -o /dev/null "$server/dump"; do
    kill -0 $pid 2>/dev/null || { echo "demo: flunkymaster did not start" >&2; exit 1; }
    sleep 0.1
done
started=$(date +%s)

step() { printf '\n== %s\n' "$*"; }
post() { curl -fsS -H 'Content-Type: application/json' -d "$2" "$server$1"; echo; }

step "Allocate 127.0.0.1 to image ipxe-demo (what fctl does)"
post /ctl '{"Addresses": ["127.0.0.1"], "Image": "ipxe-demo"}'
step "First netboot: the node's bootconfig (installer)"
curl -fsS "$server/bootconfig"
step "The ramdisk fetches its rendered install script"
curl -fsS "$server/install" > "$work/install.sh"
head -3 "$work/install.sh"
step "...and runs it; it posts its progress"
sh "$work/install.sh"
step "Second netboot: the bootconfig now boots the local disk"
curl -fsS "$server/bootconfig"
step "Status, as fctl sees it"
post /status '{"Addresses": ["127.0.0.1"], "Time": 0}' | python3 -m json.tool

state=$(curl -fsS -d '{"Addresses": ["127.0.0.1"]}' "$server/status" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["127.0.0.1"]["State"])')
kill $pid; wait $pid || true
trap - EXIT
step "Summary"
echo "node 127.0.0.1: $state in $(( $(date +%s) - started )) s"
echo "event log: $work/repository/flunky.log"
echo "state:     $work/repository/data.json"
[ "$state" = Ready ]
