#!/bin/sh
# Installs the Debian 12 packages ngx_ws_agent needs to build, test and run
# its demo, and nothing else.  Idempotent: installs only what is missing.
# Run as root.
#
#   scripts/bootstrap.sh          build + tests + demo
#   scripts/bootstrap.sh fuzz     also the clang fuzzing runtime
#   scripts/bootstrap.sh nginx126 also what scripts/nginx-build.sh needs to
#                                 fetch Debian 13's nginx 1.26.3 source and
#                                 build it (PCRE2, zlib, the archive keyring,
#                                 dpkg-dev, flock)
#   scripts/bootstrap.sh browser  also Debian's chromium, Node.js and npm, and
#                                 playwright-core into t/browser/node_modules
#                                 (pinned by t/browser/package-lock.json; it
#                                 drives /usr/bin/chromium, never downloads one)
#   scripts/bootstrap.sh debian   also what dpkg-buildpackage and lintian need
#                                 to build and check the Debian package
#                                 (debian/, t/097-debian-package.t)
#   scripts/bootstrap.sh prometheus  also Debian's prometheus (with promtool);
#                                 its system service is stopped and disabled:
#                                 the tests run private ones on loopback
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
browser=
prometheus=

pkgs="nginx nginx-dev gcc make libc6-dev libssl-dev libyajl-dev
      libhiredis-dev redis-server perl libtest-base-perl libipc-run-perl
      libtext-diff-perl liblist-moreutils-perl libhttp-message-perl
      liburi-perl libio-socket-ssl-perl procps openssl curl python3
      python3-h2"

for extra in "$@"; do
    case "$extra" in
        fuzz)     pkgs="$pkgs clang libclang-rt-14-dev" ;;
        valgrind) pkgs="$pkgs valgrind" ;;
        debian)   pkgs="$pkgs build-essential dpkg-dev debhelper fakeroot lintian" ;;
        nginx126) pkgs="$pkgs libpcre2-dev zlib1g-dev debian-archive-keyring
                        dpkg-dev util-linux" ;;
        browser)  browser=1
                  pkgs="$pkgs chromium"
                  # a Node.js that is there already (with its own npm) is used
                  command -v node > /dev/null || pkgs="$pkgs nodejs"
                  command -v npm > /dev/null || pkgs="$pkgs npm" ;;
        prometheus) prometheus=1
                  pkgs="$pkgs prometheus" ;;
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
elif [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing:$missing; run as root to install them" >&2
    exit 1
else
    echo "bootstrap: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # the nginx and redis packages start services; the project never uses them
    apt-get install -y -qq --no-install-recommends $missing > /dev/null
    echo "bootstrap: done"
fi

# Debian's prometheus starts a server on *:9090 as it installs (where init
# runs services) and at every boot; the project never uses it, so one this
# run installed is stopped and disabled (one that was there is left alone)
if [ -n "$prometheus" ]; then
    case " $missing " in *" prometheus "*)
        if [ -d /run/systemd/system ]; then
            systemctl disable --now prometheus.service > /dev/null 2>&1 || true
        elif [ -x /etc/init.d/prometheus ]; then
            /etc/init.d/prometheus stop > /dev/null 2>&1 || true
            update-rc.d prometheus disable > /dev/null 2>&1 || true
        fi
        echo "bootstrap: the prometheus service is stopped and disabled" ;;
    esac
    echo "bootstrap: $(prometheus --version 2>&1 | head -n 1)"
fi

# npm keeps a copy of the lock it installed in node_modules: a newer
# package-lock.json (a checkout, a pull) installs again
if [ -n "$browser" ]; then
    dir="$repo/t/browser"
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
       || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]
    then
        echo "bootstrap: npm ci in t/browser"
        (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
            npm ci --no-audit --no-fund --loglevel=error > /dev/null)
    fi
    echo "bootstrap: browser: $(chromium --version 2>/dev/null), node $(node --version)," \
         "playwright-core $(cd "$dir" && node -p 'require("playwright-core/package.json").version')"
fi
