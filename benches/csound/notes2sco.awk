#!/usr/bin/awk -f
# Turn carillon's notes CSV into a Csound score for carillon.orc.
#
#   awk -f notes2sco.awk [-v seconds=S] [-v tail=T] [-v reverb=fdn] notes.csv > notes.sco
#
# The CSV has a header line, then one note a line:
#   start_s,instrument,frequency_hz,gain,pan,duration_s
# with instrument one of celesta, clavichord, violin (instr 1, 2, 3).
#
# seconds: the length of the render. Notes starting at or after it are left out and
#          notes still sounding are cut there, as carillon's renderer cuts its output.
#          Without it the score runs until the last note ends, plus `tail` seconds
#          (default 3) for the reverb to ring out.
# reverb:  "sc" (default) for Csound's reverbsc (instr 10), "fdn" for the port of
#          carillon's own network (instr 11).
# The master bus (instr 20) runs for the whole score.

BEGIN {
    FS = ","
    ins["celesta"] = 1
    ins["clavichord"] = 2
    ins["violin"] = 3
    if (tail == "") tail = 3
    if (reverb == "" || reverb == "sc") rev = 10
    else if (reverb == "fdn") rev = 11
    else fail("reverb must be sc or fdn, not " reverb)
    cut = (seconds != "")
    if (cut && seconds + 0 <= 0) fail("seconds must be positive, not " seconds)
    last = 0
    notes = 0
}

function fail(msg) {
    print "notes2sco: " msg > "/dev/stderr"
    failed = 1
    exit 1
}

{ sub(/\r$/, "") }

NR == 1 {
    if ($0 != "start_s,instrument,frequency_hz,gain,pan,duration_s")
        fail("line 1: expected the header start_s,instrument,frequency_hz,gain,pan,duration_s")
    next
}

/^[ \t]*$/ { next }

{
    if (NF != 6) fail("line " NR ": expected 6 fields, found " NF)
    name = $2
    gsub(/^[ \t"]+|[ \t"]+$/, "", name)
    if (!(name in ins)) fail("line " NR ": unknown instrument " name)
    start = $1 + 0
    freq = $3 + 0
    dur = $6 + 0
    if (freq <= 0) fail("line " NR ": frequency must be positive")
    if (dur <= 0) next
    if (cut) {
        if (start >= seconds) next
        if (start + dur > seconds) dur = seconds - start
    }
    printf "i %d %.6f %.6f %.4f %.6f %.4f\n", ins[name], start, dur, freq, $4 + 0, $5 + 0
    notes++
    if (start + dur > last) last = start + dur
}

END {
    if (failed) exit 1
    length_s = cut ? seconds : last + tail
    printf "i %d 0 %.6f\n", rev, length_s
    printf "i 20 0 %.6f\n", length_s
    print "e"
    printf "notes2sco: %d notes, %.3f s\n", notes, length_s > "/dev/stderr"
}
