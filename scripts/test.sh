#!/bin/sh
# The whole test suite from a fresh Debian 12 machine: install what is
# missing, build the module, run every test under t/ with prove, twice:
#
#   pass 1  Debian 12's packaged nginx 1.22.1 (/usr/sbin/nginx) loading
#           build/ngx_ws_agent_module.so (scripts/build.sh)
#   pass 2  nginx 1.26.3 from Debian 13's source (scripts/nginx-build.sh,
#           cached outside the repository) loading the module built against
#           it, build/nginx-1.26.3/objs/ngx_ws_agent_module.so
#
# Fails if either pass fails.
#
#   scripts/test.sh                  everything, both passes
#   scripts/test.sh t/020-gate.t     some files, both passes
#   TEST_PASSES=1.26.3 scripts/test.sh ...   one pass (1.22.1 or 1.26.3)
#   TEST_NGINX_USE_VALGRIND=1 scripts/test.sh   nginx under valgrind
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

passes=${TEST_PASSES:-1.22.1 1.26.3}
extras=
[ -n "${TEST_NGINX_USE_VALGRIND:-}" ] && extras=valgrind
case " $passes " in *" 1.26.3 "*) extras="$extras nginx126" ;; esac
scripts/bootstrap.sh fuzz browser debian prometheus $extras
scripts/build.sh
case " $passes " in
    *" 1.26.3 "*) built=$(scripts/nginx-build.sh)
                  nginx126=$(echo "$built" | sed -n 's/^nginx //p')
                  module126=$(echo "$built" | sed -n 's/^module //p') ;;
esac

# t/090-browser.t and t/097-debian-package.t fail here, not skip, if the
# browser or the Debian build tools are missing; so do the Prometheus files
# (t/095, t/096) without prometheus and promtool
export WS_AGENT_BROWSER_REQUIRED=1
export WS_AGENT_DEBIAN_REQUIRED=1
export WS_AGENT_PROMETHEUS_REQUIRED=1
# t/045-subscribe-http2.t fails, not skips, without python3-h2
export WS_AGENT_H2_REQUIRED=1

if [ $# -eq 0 ]; then
    set -- t/
fi

logs=$(mktemp -d /tmp/ws_agent_test.XXXXXX)
trap 'rm -rf "$logs"' EXIT
summary=
failed=
failures=
passed_tests=0
failed_tests=0

# failures N VERSION LOG: what failed in a pass, repeated after the last
# pass, so that the tail of the output (all a CI page may keep) names it:
# each "not ok" line with the diagnostics under it, and prove's report
failures() {
    echo
    echo "=== what failed in pass $1 (nginx $2):"
    awk '/^Test Summary Report/ { exit }
         /^#   Failed test/ { keep = 12 }
         keep > 0 { print; keep-- }' "$3" | head -150
    sed -n '/^Test Summary Report/,/^Files=/p' "$3" | head -40
}

# run N VERSION WHAT BINARY MODULE FILES...: the suite once, prove's own
# output as it goes, and a line for the summary
run() {
    pass=$1 version=$2 what=$3 binary=$4 module=$5
    shift 5
    echo
    echo "=== pass $pass: nginx $version, $what"
    echo "===   $binary"
    echo "===   $module"
    echo
    start=$(date +%s)
    # the group runs under set -e: prove's status is caught, not fatal
    echo missing > "$logs/rc"
    { r=0
      TEST_NGINX_BINARY=$binary TEST_NGINX_LOAD_MODULES=$module \
          WS_AGENT_NGINX_VERSION=$version prove -I t/lib -r "$@" 2>&1 || r=$?
      echo $r > "$logs/rc"; } | tee "$logs/$pass.log"
    rc=$(cat "$logs/rc")
    secs=$(( $(date +%s) - start ))
    figures=$(sed -n 's/^\(Files=[0-9]*, Tests=[0-9]*\),.*/\1/p' "$logs/$pass.log" | tail -1)
    tests=$(echo "$figures" | sed -n 's/.*Tests=\([0-9]*\)/\1/p')
    bad=$(sed -n 's/.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' "$logs/$pass.log" \
          | awk '{ n += $1 } END { print n + 0 }')
    [ "$rc" = 0 ] || [ "$bad" -gt 0 ] || bad=1    # a file died without a count
    ok=$(( ${tests:-0} - bad ))
    [ "$ok" -ge 0 ] || ok=0
    passed_tests=$(( passed_tests + ok ))
    failed_tests=$(( failed_tests + bad ))
    if [ "$rc" = 0 ]; then verdict=PASS; else verdict=FAIL; failed=1; fi
    [ "$rc" = 0 ] || failures="$failures$(failures "$pass" "$version" "$logs/$pass.log")
"
    summary="$summary
test.sh: pass $pass, nginx $version ($what): $verdict (${figures:-no figures}, $secs s)"
}

n=0
for v in $passes; do
    n=$((n + 1))
    case "$v" in
        1.22.1)
            run "$n" 1.22.1 "Debian 12's package" /usr/sbin/nginx \
                "$repo/build/ngx_ws_agent_module.so" "$@" ;;
        1.26.3)
            run "$n" 1.26.3 "Debian 13's source, built here" \
                "$nginx126" "$module126" "$@" ;;
        *) echo "test.sh: unknown pass \"$v\" in TEST_PASSES (1.22.1 or 1.26.3)" >&2
           exit 2 ;;
    esac
done

[ -z "$failures" ] || echo "$failures"
echo "$summary"
echo "test.sh: $passed_tests passed, $failed_tests failed"
[ -z "$failed" ]
