#!/bin/sh
# The test suite with the module built with AddressSanitizer and
# UndefinedBehaviorSanitizer (gcc 12), loaded into Debian's own nginx.
#
#   scripts/asan.sh                     every file under t/
#   scripts/asan.sh t/020-gate.t ...    some files
#   ASAN_KEEP=1 scripts/asan.sh ...     keep the work directory
#   ASAN_TREE=work scripts/asan.sh      build the working tree, not HEAD
#   ASAN_SRC=/some/copy scripts/asan.sh build that source tree instead
#
# How: HEAD (or the working tree) is copied to a private directory (so
# build/ of the checkout is not touched) and built there with WS_AGENT_CFLAGS=
# "-fsanitize=address,undefined".  /usr/sbin/nginx is not instrumented, so
# the ASan runtime must be the first library of the process: a wrapper,
# given to the runner as TEST_NGINX_BINARY, execs nginx with
# LD_PRELOAD=libasan.so.8 (and libubsan.so.1).  Workers are forked from the
# master, so they inherit the runtime although nginx clears their
# environment.  Reports go to files (log_path), one per process; the
# script fails when any file holds a report, whatever prove said.
# LeakSanitizer runs when each nginx process exits; only leaks with a frame
# in the module count.  Except in "nginx -t" (-T, -tq...) processes: nginx
# never frees the configuration it tested (main() returns with the tested
# cycle referenced by nothing), so LeakSanitizer would report all of it,
# the module's configuration-time allocations (a JWT key) included.  Those
# same allocations are made, freed and checked in every nginx that runs:
# master and workers destroy their cycle's pool when they exit.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
for lib in "$asan" "$ubsan"; do
    if [ ! -e "$lib" ]; then
        echo "asan.sh: $lib not found (gcc's libasan/libubsan)" >&2
        exit 1
    fi
done
# the real files, not the linker scripts/symlinks of the -dev layout
asan=$(readlink -f "$asan")
ubsan=$(readlink -f "$ubsan")

work=$(mktemp -d /tmp/ws_agent_asan.XXXXXX)
if [ -z "${ASAN_KEEP:-}" ]; then
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/src" "$work/reports"
# workers run as nginx's unprivileged user: they must reach the reports
chmod 755 "$work"
chmod 1777 "$work/reports"

# a private copy of the sources; the tests themselves run from the checkout
if [ -n "${ASAN_SRC:-}" ]; then
    tar -C "$ASAN_SRC" --exclude=./build --exclude=./.git -cf - . \
        | tar -C "$work/src" -xf -
elif [ "${ASAN_TREE:-head}" = work ]; then
    tar -C "$repo" --exclude=./build --exclude=./t/servroot \
        --exclude=./fuzz/work --exclude=./.git -cf - . \
        | tar -C "$work/src" -xf -
else
    git -C "$repo" archive HEAD | tar -C "$work/src" -xf -
fi

WS_AGENT_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g" \
    "$work/src/scripts/build.sh"
module="$work/src/build/ngx_ws_agent_module.so"

# nginx dlclose()s modules when it exits, before LeakSanitizer symbolizes
# its stacks: keep them mapped so a leak names the module's functions
printf 'int dlclose(void *h) { (void) h; return 0; }\n' > "$work/nodlclose.c"
gcc -shared -fPIC -O2 -o "$work/nodlclose.so" "$work/nodlclose.c"

cat > "$work/nginx" <<EOF
#!/bin/sh
# no leak check in a configuration test (see asan.sh): flags only, with t
leaks=1
for a in "\$@"; do
    case "\$a" in
        -*[!hvVtTq]*) ;;
        -*[tT]*) leaks=0 ;;
    esac
done
export LD_PRELOAD="$asan $ubsan $work/nodlclose.so"
export ASAN_OPTIONS="detect_leaks=\$leaks:log_path=$work/reports/asan:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:fast_unwind_on_malloc=0"
export LSAN_OPTIONS="report_objects=1:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$work/reports/ubsan"
exec /usr/sbin/nginx "\$@"
EOF
chmod +x "$work/nginx"

if [ $# -eq 0 ]; then
    set -- t/
fi

# one prove per file: nginx writes a report to its stderr, that is the
# error.log, when it cannot open log_path (seen for the first worker), and
# the runner wipes servroot at the start of every file
files=$(for a in "$@"; do
            if [ -d "$a" ]; then find "$a" -name '*.t' | sort; else echo "$a"; fi
        done)
status=0
for f in $files; do
    # the soak's RSS bound means nothing here: ASan's quarantine keeps
    # freed memory (its leak check and fd checks still run)
    TEST_NGINX_BINARY="$work/nginx" TEST_NGINX_LOAD_MODULES="$module" \
    TEST_NGINX_SERVROOT="$work/servroot" SOAK_RSS_GROWTH_KB=none \
        prove -I t/lib "$f" || status=$?
    for log in "$work"/servroot/logs/*.log; do
        [ -e "$log" ] || continue
        if grep -q "Sanitizer\|runtime error:" "$log"; then
            cp "$log" "$work/reports/error.log.$(basename "$f")"
        fi
    done
done

# a report counts when it is an error, or a leak with a frame in the module
bad=0
ignored=0
for f in "$work"/reports/*; do
    [ -e "$f" ] || continue
    if grep -q "ERROR: AddressSanitizer\|runtime error:" "$f" \
       || { grep -q "ERROR: LeakSanitizer" "$f" && grep -q "ngx_ws_agent" "$f"; }
    then
        echo "asan.sh: report in $f:" >&2
        cat "$f" >&2
        bad=1
    else
        ignored=$((ignored + 1))
    fi
done

[ "$ignored" = 0 ] || echo "asan.sh: $ignored LeakSanitizer reports of" \
    "nginx's own exit-time allocations ignored (no frame in the module)"

if [ "$bad" = 1 ]; then
    echo "asan.sh: sanitizer reports above" >&2
    exit 1
fi

echo "asan.sh: no sanitizer report"
exit "$status"
