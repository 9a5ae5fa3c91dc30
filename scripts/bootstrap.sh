#!/bin/sh
# Installs the Debian 12 packages ngx_ws_agent needs to build, test and run
# its demo, and nothing else.  Idempotent: installs only what is missing.
# Run as root.
#
#   scripts/bootstrap.sh          build + tests + demo
#   scripts/bootstrap.sh fuzz     also the clang fuzzing runtime
set -eu

pkgs="nginx nginx-dev gcc make libc6-dev libssl-dev libyajl-dev
      libhiredis-dev redis-server perl libtest-base-perl libipc-run-perl
      libtext-diff-perl liblist-moreutils-perl libhttp-message-perl
      liburi-perl libio-socket-ssl-perl procps openssl"

for extra in "$@"; do
    case "$extra" in
        fuzz)     pkgs="$pkgs clang libclang-rt-14-dev" ;;
        valgrind) pkgs="$pkgs valgrind" ;;
        *) echo "bootstrap.sh: unknown extra \"$extra\"" >&2; exit 2 ;;
    esac
done

missing=
for p in $pkgs; do
    if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null \
         | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "bootstrap: all packages present"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing:$missing; run as root to install them" >&2
    exit 1
fi

echo "bootstrap: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# the nginx and redis packages start services; the project never uses them
apt-get install -y -qq --no-install-recommends $missing > /dev/null
echo "bootstrap: done"
