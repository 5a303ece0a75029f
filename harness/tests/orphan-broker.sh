#!/usr/bin/env bash
# orphan-broker.sh ARGS... - a keel-broker that leaves processes behind, in
# the same process group, without a parent-death signal and without the
# node's pipes (so the node still counts as down when the broker exits):
# `tail -f $KH_ORPHAN_MARK`, and a python3 listening on the node's host
# (from --listen HOST:PORT) at port+1.  Then execs $KH_REAL_BROKER ARGS.
tail -f "$KH_ORPHAN_MARK" </dev/null >/dev/null 2>&1 3>&- &
listen=
prev=
for a in "$@"; do
  [ "$prev" = --listen ] && listen=$a
  prev=$a
done
# It says "listening" on a pipe read here, so it listens before the broker
# starts (no race with the harness's look at the end).
exec 4< <(python3 -c '
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], int(sys.argv[2]) + 1))
s.listen(1)
print("listening", flush=True)
s.accept()
' "${listen%:*}" "${listen##*:}" "$KH_ORPHAN_MARK" </dev/null 2>/dev/null 3>&-)
read -r -u 4 ready
[ "$ready" = listening ] || exit 1
exec 4<&-
exec "$KH_REAL_BROKER" "$@"
