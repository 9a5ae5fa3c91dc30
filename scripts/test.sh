#!/bin/sh
# The whole test suite from a fresh Debian 12 machine: install what is
# missing, build the module, run every test under t/ with prove.
#
#   scripts/test.sh                  everything
#   scripts/test.sh t/020-gate.t     some files
#   TEST_NGINX_USE_VALGRIND=1 scripts/test.sh   nginx under valgrind
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

extras=
[ -n "${TEST_NGINX_USE_VALGRIND:-}" ] && extras=valgrind
scripts/bootstrap.sh fuzz browser debian prometheus $extras
scripts/build.sh

# t/090-browser.t and t/097-debian-package.t fail here, not skip, if the
# browser or the Debian build tools are missing; so do the Prometheus files
# (t/095, t/096) without prometheus and promtool
export WS_AGENT_BROWSER_REQUIRED=1
export WS_AGENT_DEBIAN_REQUIRED=1
export WS_AGENT_PROMETHEUS_REQUIRED=1

export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
export TEST_NGINX_LOAD_MODULES="$repo/build/ngx_ws_agent_module.so"

if [ $# -eq 0 ]; then
    set -- t/
fi

exec prove -I t/lib -r "$@"
