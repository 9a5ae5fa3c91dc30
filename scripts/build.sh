#!/bin/sh
# Builds build/ngx_ws_agent_module.so out of tree against Debian's nginx-dev
# (/usr/share/nginx/src), with Debian's own configure flags so the module is
# binary-compatible with /usr/sbin/nginx, and the compiler flags Debian
# builds its own nginx modules with (dpkg-buildflags: -O2, hardening).
# Warnings are errors.
#
#   scripts/build.sh            build (configure only when needed)
#   WS_AGENT_CFLAGS=... scripts/build.sh   extra flags (e.g. -fsanitize=address)
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
src=${NGINX_SRC:-/usr/share/nginx/src}
build="$repo/build"

if [ ! -f "$src/conf_flags" ]; then
    echo "build.sh: $src/conf_flags not found: apt-get install nginx-dev" >&2
    exit 1
fi

# NGX_CONF_FLAGS=( ... ) is bash syntax; take the words between the parens
flags=$(sed -n 's/^NGX_CONF_FLAGS=( *\(.*\) *)$/\1/p' "$src/conf_flags")

# -ffile-prefix-map names this checkout: the stamp below sees a move
debian=$(cd "$repo" && dpkg-buildflags --get CFLAGS 2>/dev/null \
         && dpkg-buildflags --get CPPFLAGS 2>/dev/null | tr '\n' ' ') \
    || debian="-g -O2"
cflags="$(echo $debian) -Werror ${WS_AGENT_CFLAGS:-}"
stamp="$build/.configured"
want="$flags|$cflags"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
   || [ "$repo/config" -nt "$stamp" ]; then
    mkdir -p "$build"
    (cd "$src" && ./configure $flags --with-cc-opt="$cflags" \
        --add-dynamic-module="$repo" --builddir="$build") > "$build/configure.log" 2>&1 || {
        tail -30 "$build/configure.log" >&2
        echo "build.sh: configure failed (full log: $build/configure.log)" >&2
        exit 1
    }
    echo "$want" > "$stamp"
fi

make -s -f "$build/Makefile" -C "$src" modules
ls -l "$build/ngx_ws_agent_module.so" | awk '{print "built " $NF " (" $5 " bytes)"}'
