#!/bin/sh
# The host paths a container mounts: docker_mounts.sh UID GID [-r PATH...] [-w FOLDER...]
#
# -r: paths it reads: they must exist (a missing one would be created by Docker, as an empty root-owned folder).
# -w: folders it writes: created when missing. The image's user (UID, GID) must be able to write them: as root,
# a folder made here is given to that user; one that exists and belongs to another uid is refused, as the
# container would fail on it later ("Permission denied"), with the chown that mends it.
# Exit status 2, one line on stderr, when a path is wrong.
set -eu
uid=$1 gid=$2
shift 2
mode=
for path in "$@"; do
    case "$path" in
        -r | -w) mode=$path; continue ;;
    esac
    if [ "$mode" = -r ]; then
        [ -e "$path" ] || { echo "error: $path: no such file or folder; give one that exists" >&2; exit 2; }
    elif [ ! -e "$path" ]; then
        mkdir -p "$path"
        if [ "$(id -u)" = 0 ]; then chown "$uid:$gid" "$path"; fi
    elif [ ! -d "$path" ]; then
        echo "error: $path is a file; the container needs a folder there" >&2
        exit 2
    elif [ "$(id -u)" = 0 ] && [ "$(stat -L -c %u "$path")" != "$uid" ]; then
        # -L: the folder a link points to, whose owner is what the container meets
        echo "error: $path belongs to uid $(stat -L -c %u "$path") and the image's user (uid $uid) cannot write it:" \
            "run chown -R $uid:$gid $path/, or choose another folder" >&2
        exit 2
    fi
done
