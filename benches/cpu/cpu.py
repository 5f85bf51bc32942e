#!/usr/bin/env python3
"""What `carillon play --host jack` costs a core, busy and in silence, beside JACK's floor.

A private real-time JACK dummy server (48 kHz, --period frames) runs three things in
turn, and for each the CPU time of the whole process (and of each of its threads) is
read from /proc over --seconds, after a warm-up:

  floor    JACK's own `jack_simple_client`, which copies a sine: what any client
           costs the machine just by being woken every period;
  busy     carillon replaying the all-wikis hour of the corpus at --speed 3.5
           (about 2 edits/s, English Wikipedia's real rate);
  silence  carillon after a replay of 5 edits and then nothing, measured from
           --quiet seconds after the last edit.

    benches/cpu/cpu.py target/release/carillon OUTDIR [--period 256] [--seconds 60]
        [--warmup 30] [--quiet 75] [--config FILE] [--only floor,busy,silence]

Needs jackd and jack_simple_client (jackd2); run as root so that jackd -R gets
real-time priority. The corpus must sit at ../shared/corpus beside the repository.
"""
import json, os, subprocess, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from jackd import dummy_server  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, '..', '..', '..', 'shared', 'corpus', 'wikimon')
binary, outdir = sys.argv[1], sys.argv[2]
args = dict(zip(sys.argv[3::2], sys.argv[4::2]))
period = int(args.get('--period', 256))
seconds = float(args.get('--seconds', 60))
warmup = float(args.get('--warmup', 30))
quiet = float(args.get('--quiet', 75))
only = args.get('--only', 'floor,busy,silence').split(',')
extra = ['--config', args['--config']] if '--config' in args else []
os.makedirs(outdir, exist_ok=True)
TICK = os.sysconf('SC_CLK_TCK')


def cpu_of(pid):
    """Total CPU seconds of a process and of each of its threads (by name)."""
    def read(path):
        with open(path) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    threads = {}
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            name = open(f'/proc/{pid}/task/{tid}/comm').read().strip()
            threads[f'{name}[{tid}]'] = read(f'/proc/{pid}/task/{tid}/stat')
        except OSError:
            pass
    return read(f'/proc/{pid}/stat'), threads


def measure(label, proc, wait):
    time.sleep(wait)
    if proc.poll() is not None:
        sys.exit(f'{label}: the process ended early ({proc.returncode}); see {outdir}')
    t0, before = time.monotonic(), cpu_of(proc.pid)
    time.sleep(seconds)
    t1, after = time.monotonic(), cpu_of(proc.pid)
    span = t1 - t0
    print(f'{label}: {100 * (after[0] - before[0]) / span:.2f} % of one core over {span:.0f} s')
    for name, used in sorted(after[1].items()):
        share = 100 * (used - before[1].get(name, 0.0)) / span
        if share >= 0.005:
            print(f'    {name:28} {share:.2f} %')


with dummy_server('cpu%d' % os.getpid(), period, os.path.join(outdir, 'jackd.log')) as env:
    if 'floor' in only:
        p = subprocess.Popen(['jack_simple_client'], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        measure('floor (jack_simple_client)', p, 5)
        p.terminate(); p.wait()
    play = [binary, 'play', '--host', 'jack'] + extra
    if 'busy' in only:
        hour = os.path.join(CORPUS, 'wikiticker-all-0600-1h.jsonl')
        log = open(os.path.join(outdir, 'busy.log'), 'w')
        p = subprocess.Popen(play + ['--source', 'replay:' + hour, '--speed', '3.5'], env=env,
                             stdout=log, stderr=subprocess.STDOUT)
        measure('busy (~2 edits/s)', p, warmup)
        p.terminate(); p.wait()
    if 'silence' in only:
        five = os.path.join(outdir, 'five.jsonl')
        with open(os.path.join(CORPUS, 'wikiticker-en-0600-1h.jsonl')) as f:
            lines = [json.loads(next(f)) for _ in range(6)]
        for i, m in enumerate(lines):
            m['_t'] = float(i) if i < 5 else 1e6  # the sixth never comes
        with open(five, 'w') as f:
            f.writelines(json.dumps(m) + '\n' for m in lines)
        log = open(os.path.join(outdir, 'silence.log'), 'w')
        p = subprocess.Popen(play + ['--source', 'replay:' + five], env=env, stdout=log,
                             stderr=subprocess.STDOUT)
        measure(f'silence (from {quiet:.0f} s after the last edit)', p, 4 + quiet)
        p.terminate(); p.wait()
