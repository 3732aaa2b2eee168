#!/usr/bin/env bash
# A stand-in for python:X.Y-slim-bookworm where no registry is in reach (docs/docker.md): a Debian bookworm root
# (mmdebstrap, from Debian's archive) with the CPython that pyenv built on bookworm copied into /usr/local, imported
# into podman as localhost/python-local:X.Y. Usage: local_base_image.sh X.Y [TAG]; run as root (chroot, podman).
# Slimmed as the official slim images are: no manuals or translations, no test suites, .pyc files or static libpython.
set -euo pipefail
version=${1:?usage: local_base_image.sh PYTHON_VERSION (e.g. 3.11) [TAG]}
tag=${2:-localhost/python-local:$version}
prefix=$(ls -d "$(pyenv root)/versions/$version".* | sort -V | tail -1)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# The shared libraries CPython's extension modules load (ssl, ctypes, sqlite3, lzma, bz2, readline, uuid, zlib...)
mmdebstrap --variant=minbase \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' --include=ca-certificates,libssl3,libffi8,libsqlite3-0,liblzma5,libbz2-1.0,libreadline8,libncursesw6,libuuid1,zlib1g,libgdbm6,libexpat1 \
    bookworm "$root"
# The interpreter and its standard library, without pyenv's site-packages and the test suite (pip comes from ensurepip)
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib"
cp -a "$prefix/bin/python$version" "$root/usr/local/bin/"
cp -a "$prefix"/lib/libpython*.so* "$root/usr/local/lib/"
tar -C "$prefix/lib" --exclude="python$version/site-packages/*" --exclude="python$version/test" \
    --exclude='__pycache__' --exclude=tests --exclude=idle_test --exclude='libpython*.a' -cf - "python$version" | tar -C "$root/usr/local/lib" -xf -
ln -s "python$version" "$root/usr/local/bin/python3"
ln -s "python$version" "$root/usr/local/bin/python"
# The host's extra CA certificates (an intercepting proxy's), for pip and Python inside the images
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$root" sh -c 'ldconfig && update-ca-certificates >/dev/null && python3 -m ensurepip --default-pip >/dev/null'
find "$root/usr/local" -name __pycache__ -type d -prune -exec rm -rf {} +
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$root/etc/pip.conf"
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
tar -C "$root" -cf - . | podman import --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$tag"
