#!/bin/sh
# Writes the seed corpus: a config byte (bit 0: from the client; bits 1-3:
# the frame limit, 0 = none) then frames, mostly RFC 6455 section 5.7.

set -e

dir=${1:-corpus/frame}
mkdir -p "$dir"

seed() {
    printf "$2" > "$dir/$1"
}

# server (unmasked), no limit
seed hello          '\000\201\005Hello'
seed fragmented     '\000\001\003Hel\200\002lo'
seed ping-pong      '\000\211\005Hello\212\005Hello'
seed zero-length    '\000\201\000\001\000\211\000\000\000\200\000\210\000'
seed close-code     '\000\210\002\003\350\210\014\003\351going away'
seed len16          '\000\202\176\000\200'"$(printf '%0128d' 0)"
seed len64-header   '\000\202\177\000\000\000\000\000\001\000\000abc'
seed len64-top-bit  '\000\202\177\200\000\000\000\000\000\000\000'
seed rsv            '\000\301\005Hello'
seed reserved-op    '\000\203\000\213\000'
seed cont-first     '\000\200\002lo'
seed text-in-frag   '\000\001\003Hel\201\002lo'
seed big-ping       '\000\211\176\000\176'
seed frag-ping      '\000\011\000'

# client (masked)
seed masked-hello   '\001\201\2057\372!=\177\237MQX'
seed masked-pong    '\001\212\2057\372!=\177\237MQX'
seed masked-frag    '\001\001\203\001\002\003\004abc\211\200\001\002\003\004\200\202\005\006\007\010de'
seed masked-close   '\001\210\202\001\002\003\004\002\352'
seed unmasked-cli   '\001\201\005Hello'

# limits: 5 (config 6|c), 126 (config 10|c)
seed limit5-ok      '\006\201\005Hello'
seed limit5-over    '\006\201\006Hello!'
seed limit126       '\013\202\376\000\177\001\002\003\004'"$(printf '%0127d' 0)"
