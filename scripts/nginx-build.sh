#!/bin/sh
# Builds an nginx other than Debian 12's packaged one, and the module against
# it, so the suite can run on more than one version (scripts/test.sh runs it
# on Debian 12's 1.22.1 and on this one).
#
#   scripts/nginx-build.sh              Debian 13's nginx 1.26.3
#   scripts/nginx-build.sh --src DIR    an nginx source tree you already have
#                                       (e.g. nginx.org mainline), built the
#                                       same way, in place; nothing is fetched
#                                       (built again when DIR's nginx.h is
#                                       newer than the cached build)
#
# Prints the nginx binary and the module as its last two lines:
#   nginx   build/nginx-V/sbin/nginx      (a link into the cache below)
#   module  build/nginx-V/objs/ngx_ws_agent_module.so
#
# Debian 13's source is fetched with apt-get source through a private apt
# configuration (sources.list, state and cache under the cache dir below;
# /etc/apt is only read): deb-src of trixie main on the mirror of
# /etc/apt/sources.list.d/debian.sources, signed by debian-archive-keyring.
# apt verifies trixie's InRelease and, through it, the Sources index.  The
# mirror reachable from this project's machines answers 404 for nginx's
# .dsc and .debian.tar.xz, so only nginx_1.26.3.orig.tar.gz (nginx.org's
# 1.26.3 release, unchanged) arrives: the script checks its sha256 against
# that verified Sources index itself and builds it without Debian's patches.
# When the .dsc and the Debian tarball do arrive, dpkg-source -x unpacks
# them (Debian's patches applied) instead.
#
# nginx is configured --with-compat --with-debug --with-threads
# --with-http_ssl_module --with-http_v2_module --with-http_realip_module
# --with-stream, compiled with dpkg-buildflags' flags (as build.sh compiles
# the module), and installed into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ngx_ws_agent/nginx-V   (NGINX_CACHE_DIR)
# outside the repository; a complete one is reused (no network then).  The
# module is configured with the same options against that source into the
# repository's git-ignored build/nginx-V/, warnings as errors.  Builds of
# the cache are serialized with flock: checkouts share it.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${NGINX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ngx_ws_agent}
version=1.26.3
suite=trixie
jobs=${NGINX_BUILD_JOBS:-2}
srcdir=

while [ $# -gt 0 ]; do
    case "$1" in
        --src) srcdir=$(cd "$2" && pwd); shift 2 ;;
        *) echo "nginx-build.sh: unknown argument \"$1\"" >&2; exit 2 ;;
    esac
done

say() { echo "nginx-build: $*" >&2; }
die() { echo "nginx-build.sh: $*" >&2; exit 1; }

if [ -n "$srcdir" ]; then
    version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"$/\1/p' \
              "$srcdir/src/core/nginx.h" 2>/dev/null) \
        || true
    [ -n "$version" ] || die "$srcdir is not an nginx source tree"
    [ -x "$srcdir/configure" ] && [ -d "$srcdir/html" ] \
        || die "$srcdir is not laid out as a release: in a git checkout move" \
               "auto/configure, docs/html and docs/man to the top first (as" \
               "misc/GNUmakefile's release target does)"
fi

options="--with-compat --with-debug --with-threads --with-http_ssl_module
         --with-http_v2_module --with-http_realip_module --with-stream"
options=$(echo $options)

# Debian's compiler and linker flags; -ffile-prefix-map names the directory
# dpkg-buildflags runs in, so each build computes them where it compiles
buildflags() {
    (cd "$1" && f="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)" \
        && echo $f) 2>/dev/null || echo "-g -O2"
}
ldflags=$(dpkg-buildflags --get LDFLAGS 2>/dev/null || true)

prefix="$cache/nginx-$version"
mkdir -p "$cache"
exec 9> "$cache/.lock"
flock -w 900 9 || die "$cache/.lock: another build held it for 15 minutes"


# --- the source: Debian 13's package through a private apt -----------------

# the Debian mirror this machine already uses
mirror() {
    if [ -n "${NGINX_DEB_MIRROR:-}" ]; then
        echo "$NGINX_DEB_MIRROR"
        return
    fi
    for f in /etc/apt/sources.list.d/debian.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/ { for (i = 2; i <= NF; i++)
                            if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f"
    done | head -1 | grep . && return
    # one-line format: deb [options] URI suite components
    sed -n 's/^deb\(-src\)\? \(\[[^]]*\] \)\?\([^ ]*\/debian\/\?\) .*/\3/p' \
        /etc/apt/sources.list 2>/dev/null | head -1
}

# sha256 of FILE in the Sources record of nginx VERSION apt verified
sources_sha256() {
    apt-cache $apt showsrc nginx 2>/dev/null | awk -v v="$1" -v f="$2" '
        /^Version: / { ours = ($2 == v) }
        /^[A-Z]/ { sums = ($1 == "Checksums-Sha256:") }
        ours && sums && /^ / && $3 == f { print $1; exit }'
}

fetch_debian_source() {
    a="$cache/apt"
    mkdir -p "$a/state/lists/partial" "$a/cache/archives/partial" "$cache/src"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$keyring" ] || die "$keyring missing: scripts/bootstrap.sh nginx126"
    host=$(mirror)
    [ -n "$host" ] || die "no Debian mirror in /etc/apt/sources.list.d/debian.sources" \
        "or /etc/apt/sources.list (set NGINX_DEB_MIRROR)"
    echo "deb-src [signed-by=$keyring] $host $suite main" > "$a/sources.list"
    apt="-o Dir::Etc::sourcelist=$a/sources.list -o Dir::Etc::sourceparts=-
         -o Dir::State=$a/state -o Dir::Cache=$a/cache
         -o Dir::State::status=/var/lib/dpkg/status"

    say "apt-get update of $suite's sources ($host)"
    apt-get $apt -q update > "$a/update.log" 2>&1 || {
        cat "$a/update.log" >&2
        die "apt-get update of $suite's deb-src failed"
    }
    debver=$(apt-cache $apt showsrc nginx 2>/dev/null \
             | sed -n "s/^Version: \($version-.*\)/\1/p" | head -1)
    [ -n "$debver" ] || die "$suite's Sources has no nginx $version" \
        "($(apt-cache $apt showsrc nginx 2>/dev/null | sed -n 's/^Version: //p' | tr '\n' ' '))"

    orig="nginx_$version.orig.tar.gz"
    dsc="nginx_$(echo "$debver" | sed 's/^[0-9]*://').dsc"
    want=$(sources_sha256 "$debver" "$orig")
    [ -n "$want" ] || die "no sha256 of $orig in $suite's Sources"

    say "apt-get source --download-only nginx=$debver"
    # the .dsc and .debian.tar.xz may be missing on the mirror (404): apt
    # then exits non-zero with the orig tarball downloaded and verified
    (cd "$cache/src" && rm -f nginx_*.dsc nginx_*.debian.tar.* \
        && apt-get $apt -q source --download-only "nginx=$debver") \
        > "$a/source.log" 2>&1 || true
    grep -E '^(Err|E):' "$a/source.log" | sed 's/^/    /' >&2 || true

    [ -f "$cache/src/$orig" ] || { cat "$a/source.log" >&2
        die "$orig did not download"; }
    got=$(sha256sum "$cache/src/$orig" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "$orig: sha256 $got, $suite's Sources says $want"
    say "$orig sha256 $got matches $suite's Sources"

    rm -rf "$cache/src/nginx-$version"
    if [ -f "$cache/src/$dsc" ]; then
        dsum=$(sha256sum "$cache/src/$dsc" | cut -d' ' -f1)
        [ "$dsum" = "$(sources_sha256 "$debver" "$dsc")" ] \
            || die "$dsc: sha256 does not match $suite's Sources"
        say "$dsc arrived: dpkg-source -x (Debian's patches applied)"
        (cd "$cache/src" && dpkg-source -q -x "$dsc" "nginx-$version") >&2
        provenance="Debian $debver ($dsc, sha256 $dsum)"
    else
        say "no $dsc on the mirror: nginx.org's $version tarball," \
            "without Debian's patches"
        tar -C "$cache/src" -xzf "$cache/src/$orig"
        provenance="$orig of Debian $debver (sha256 $got), no Debian patches"
    fi
    srcdir="$cache/src/nginx-$version"
}


# --- nginx, into the cache --------------------------------------------------

stamp="$prefix/.complete"
if [ -z "$srcdir" ] && [ -f "$stamp" ] && [ -x "$prefix/sbin/nginx" ] \
   && [ "$(sed -n 2p "$stamp")" = "$options" ] \
   && [ "$(sed -n 3p "$stamp")" = "$cache/src/nginx-$version" ] \
   && [ -d "$cache/src/nginx-$version" ]; then
    srcdir="$cache/src/nginx-$version"
    say "nginx $version from the cache ($prefix)"
elif [ -n "$srcdir" ] && [ -f "$stamp" ] && [ -x "$prefix/sbin/nginx" ] \
     && [ "$(sed -n 2p "$stamp")" = "$options" ] \
     && [ "$(sed -n 3p "$stamp")" = "$srcdir" ] \
     && [ ! "$srcdir/src/core/nginx.h" -nt "$stamp" ]; then
    say "nginx $version from the cache ($prefix)"
else
    if [ -z "$srcdir" ]; then
        fetch_debian_source
    else
        provenance="the source tree $srcdir"
    fi
    rm -rf "$prefix"
    log="$cache/nginx-$version.build.log"
    say "building nginx $version into $prefix (log: $log)"
    start=$(date +%s)
    (cd "$srcdir" \
        && ./configure --prefix="$prefix" $options \
               --with-cc-opt="$(buildflags "$srcdir")" --with-ld-opt="$ldflags" \
        && make -j"$jobs" && make install) > "$log" 2>&1 || {
        tail -30 "$log" >&2
        die "nginx $version did not build (full log: $log)"
    }
    if grep -n 'warning:' "$log" >&2; then
        die "nginx $version built with warnings (log: $log)"
    fi
    printf '%s\n%s\n%s\n' "$provenance" "$options" "$srcdir" > "$stamp"
    say "nginx $version built in $(( $(date +%s) - start )) s"
fi
flock -u 9


# --- the module, against it -------------------------------------------------

build="$repo/build/nginx-$version"
objs="$build/objs"
mkdir -p "$build/sbin"
ln -sfn "$prefix/sbin/nginx" "$build/sbin/nginx"

cflags="$(buildflags "$repo") -Werror ${WS_AGENT_CFLAGS:-}"
mstamp="$objs/.configured"
want="$srcdir|$options|$cflags|$(sed -n 1p "$stamp")"
if [ ! -f "$mstamp" ] || [ "$(cat "$mstamp")" != "$want" ] \
   || [ "$repo/config" -nt "$mstamp" ] || [ "$stamp" -nt "$mstamp" ]; then
    rm -rf "$objs"
    mkdir -p "$objs"
    # configure writes a Makefile into the source tree too: under the lock
    flock -w 900 9 || die "$cache/.lock: another build held it for 15 minutes"
    (cd "$srcdir" && ./configure --prefix="$prefix" $options \
        --with-cc-opt="$cflags" --with-ld-opt="$ldflags" \
        --add-dynamic-module="$repo" --builddir="$objs") \
        > "$build/configure.log" 2>&1 || {
        tail -30 "$build/configure.log" >&2
        die "configure of the module against nginx $version failed" \
            "(full log: $build/configure.log)"
    }
    flock -u 9
    echo "$want" > "$mstamp"
fi

make -s -j"$jobs" -f "$objs/Makefile" -C "$srcdir" modules >&2
say "module built against nginx $version ($(wc -c < "$objs/ngx_ws_agent_module.so") bytes)"
echo "nginx $build/sbin/nginx"
echo "module $objs/ngx_ws_agent_module.so"
