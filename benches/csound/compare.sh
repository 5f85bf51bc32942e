#!/usr/bin/env bash
# Time carillon and Csound rendering the same notes to a 16-bit stereo WAV at 48 kHz:
# carillon renders SOURCE and lists the notes it played (`render --notes`); Csound
# renders those notes with equivalent instruments and master bus (carillon.orc).
#
#   compare.sh CARILLON_BINARY SOURCE SECONDS
#
# SOURCE:  a carillon source, e.g. replay:../shared/corpus/wikimon/wikiticker-all-0600-1h.jsonl
# SECONDS: the length of the render; the real-time factor is SECONDS / wall time.
#
# Environment:
#   RUNS=3          renders to time; the median wall time is reported
#   REVERB=sc       sc: Csound's reverbsc; fdn: the port of carillon's own network
#   KEEP_WAV=PATH   keep the last Csound render there (for listening or `sox PATH -n stat`)
#
# Needs csound (Debian: apt-get install csound), awk and GNU date.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    echo "usage: $0 CARILLON_BINARY SOURCE SECONDS" >&2
    exit 2
}

[ $# -eq 3 ] || usage
carillon=$1
source=$2
seconds=$3
runs=${RUNS:-3}
reverb=${REVERB:-sc}

[ -x "$carillon" ] || { echo "compare.sh: $carillon is not an executable" >&2; exit 2; }
awk -v s="$seconds" 'BEGIN { exit !(s + 0 > 0) }' ||
    { echo "compare.sh: SECONDS must be a positive number, not $seconds" >&2; exit 2; }
command -v csound >/dev/null || { echo "compare.sh: csound not found (apt-get install csound)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Run a command once, its output in $work/NAME.log; print "WALL CPU" in seconds (CPU:
# user plus system time of the command and its children).
run_once() {
    local name=$1 TIMEFORMAT='%R %U %S'
    shift
    if ! { time "$@" >"$work/$name.log" 2>&1; } 2>"$work/$name.time"; then
        echo "compare.sh: $name failed:" >&2
        tail -20 "$work/$name.log" >&2
        return 1
    fi
    awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' "$work/$name.time"
}

# Median of the numbers on standard input.
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Time RUNS runs of a command and print
#   NAME: median W s for S s of audio = Rx real time (cpu C s; runs: W1 W2 W3)
# with W the median wall time and C the median CPU time.
report() {
    local name=$1 walls=() cpus=() one med cpu
    shift
    for _ in $(seq "$runs"); do
        one=$(run_once "$name" "$@") || exit 1
        walls+=("${one% *}")
        cpus+=("${one#* }")
    done
    med=$(printf '%s\n' "${walls[@]}" | median)
    cpu=$(printf '%s\n' "${cpus[@]}" | median)
    awk -v n="$name" -v m="$med" -v c="$cpu" -v s="$seconds" -v all="${walls[*]}" 'BEGIN {
        printf "%s: median %.3f s for %g s of audio = %.0fx real time (cpu %.3f s; runs: %s)\n", n, m, s, s / m, c, all
    }'
}

# --- carillon: the notes, then the timed renders ---
notes="$work/notes.csv"
"$carillon" render --source "$source" --duration "$seconds" --notes "$notes" \
    -o "$work/carillon.wav" >"$work/notes.log" 2>&1 ||
    { echo "compare.sh: carillon could not render $source:" >&2; tail -20 "$work/notes.log" >&2; exit 1; }
echo "notes: $(($(wc -l <"$notes") - 1)) played by carillon from $source"
report carillon "$carillon" render --source "$source" --duration "$seconds" -o "$work/carillon.wav"

# --- Csound: the same notes ---
awk -f "$here/notes2sco.awk" -v seconds="$seconds" -v reverb="$reverb" "$notes" \
    >"$work/notes.sco" 2>"$work/notes2sco.log" || { cat "$work/notes2sco.log" >&2; exit 1; }
sed 's/^notes2sco/csound score/' "$work/notes2sco.log"
# -d: no displays; -m0: no messages; -W -s: 16-bit WAV; no realtime audio.
report csound csound -d -m0 -W -s -o "$work/csound.wav" "$here/carillon.orc" "$work/notes.sco"
if [ -n "${KEEP_WAV:-}" ]; then
    cp "$work/csound.wav" "$KEEP_WAV"
    cp "$work/carillon.wav" "${KEEP_WAV%.wav}-carillon.wav"
fi
