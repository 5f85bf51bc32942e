#!/usr/bin/env python3
"""Where notes land against the instants their edits were sent, on captured audio.

A websocket server here sends identical edits 0.5 s apart (by default 44) to
`carillon play`, whose ALSA default device is a WAV tap (ALSA's `file` plugin) in
front of a private real-time JACK dummy server, so the WAV holds every sample carillon
played, in stream order, paced in real time. The notes are made short (a célesta
recipe cut to 0.3 s, no reverb, no density control), so each starts over digital
silence and its onset is its first non-zero sample. Were every note scheduled exactly
`latency` after its send, onset k - onset 0 would be (send k - send 0) x 48 kHz: the
script prints how far each lands from that (around the median), whole-run and against
its six neighbours (a JACK xrun moves the stream itself against the clock, which shows
as a step in the whole-run figures but not in the neighbours').

    benches/ticks/ticks.py target/release/carillon OUTDIR [--ticks 44] [--period 256] [--lead 3]

The first tick is sent --lead seconds after carillon connects (the stream clock narrows
its filter over its first 25 s: a lead of 30 measures it settled).

A send's instant is the kernel's own transmit stamp (SO_TIMESTAMPING, read back from
the socket's error queue): on loopback the receive stamp carillon schedules from is
taken a few microseconds later in the same send() call. A clock read in Python around
sendall() is not a reference: on a busy machine the thread is preempted inside that
bracket (its median and largest width are printed), mostly after the kernel has sent,
which put the read before the send tens of microseconds, a sample or more, off. The
whole-run and neighbour lines also say what they would be against the read before
sendall(), as this script measured until it used the kernel's stamps.

Needs jackd (run as root for -R), libasound2-plugins (ALSA's jack plugin), python3.
"""
import base64, hashlib, json, os, shutil, socket, statistics, struct, subprocess, sys, threading, time, wave

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from jackd import dummy_server  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
binary, outdir = sys.argv[1], sys.argv[2]
args = dict(zip(sys.argv[3::2], sys.argv[4::2]))
ticks = int(args.get('--ticks', 44))
period = int(args.get('--period', 256))
lead = float(args.get('--lead', 3))
os.makedirs(outdir, exist_ok=True)

# Short notes over silence: the built-in recipes, célesta cut to 0.3 s.
inst = os.path.join(outdir, 'instruments')
shutil.rmtree(inst, ignore_errors=True)
shutil.copytree(os.path.join(HERE, '..', '..', 'instruments'), inst)
celesta = os.path.join(inst, 'celesta.toml')
text = open(celesta).read().splitlines()
open(celesta, 'w').write('\n'.join('max_duration_s = 0.3' if l.startswith('max_duration_s') else l for l in text) + '\n')
config = os.path.join(outdir, 'ticks.toml')
open(config, 'w').write(f'[engine]\ninstruments_dir = "{inst}"\n[engine.reverb]\nwet = 0.0\n[engine.density]\nenabled = false\n')

wav = os.path.join(outdir, 'played.wav')
conf = os.path.join(outdir, 'asound.conf')
open(conf, 'w').write('''pcm.!default { type plug slave { pcm "tap" format S16_LE rate 48000 channels 2 } }
pcm.tap { type file slave.pcm "j" file "%s" format "wav" }
pcm.j { type plug slave.pcm { type jack playback_ports { 0 system:playback_1 1 system:playback_2 } } }
''' % wav)

edit = json.dumps({"action": "edit", "change_size": 40, "page_title": "Tick", "ns": "Main", "user": "t",
                   "is_anon": False, "is_bot": False, "is_minor": False, "is_new": False, "url": "", "summary": ""}).encode()
listener = socket.socket()
listener.bind(('127.0.0.1', 0))
listener.listen(1)
sent = []  # per tick: monotonic ns before and after sendall(), kernel transmit stamp (ns)

SO_TIMESTAMPING, SCM_TSTAMP_SND = 37, 0
# Stamp in software when a segment leaves for the device, stamps only (no payload
# echoed back), each keyed by the byte it ends on.
TX_STAMPS = (1 << 1) | (1 << 4) | (1 << 7) | (1 << 11)


def transmit_stamp(conn):
    """The kernel's transmit stamp (CLOCK_REALTIME ns) of what was just sent, if any."""
    stamp, deadline = None, time.monotonic() + 0.05
    while stamp is None and time.monotonic() < deadline:
        try:
            _, ancillary, _, _ = conn.recvmsg(1, 1024, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            time.sleep(0.0005)
            continue
        found, info = None, None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING:
                sec, nsec = struct.unpack('qq', data[:16])
                found = sec * 1_000_000_000 + nsec
            elif len(data) >= 16:  # sock_extended_err: ee_info says which stamp this is
                info = struct.unpack('IBBBBII', data[:16])[5]
        if info == SCM_TSTAMP_SND:
            stamp = found
    return stamp



def serve():
    conn, _ = listener.accept()
    request = b''
    while b'\r\n\r\n' not in request:
        request += conn.recv(4096)
    key = [l.split(b':', 1)[1].strip() for l in request.split(b'\r\n') if l.lower().startswith(b'sec-websocket-key')][0]
    accept = base64.b64encode(hashlib.sha1(key + b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest())
    conn.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                 b'Sec-WebSocket-Accept: ' + accept + b'\r\n\r\n')
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_STAMPS)
    frame = (bytes([0x81, 126]) + struct.pack('>H', len(edit)) if len(edit) >= 126 else bytes([0x81, len(edit)])) + edit
    start = time.monotonic_ns() + int(lead * 1e9)
    for k in range(ticks):
        due = start + k * 500_000_000
        while time.monotonic_ns() < due - 2_000_000:
            time.sleep(0.001)
        while time.monotonic_ns() < due:  # the last 2 ms spun: sends on time to a few µs
            pass
        before = time.monotonic_ns()
        conn.sendall(frame)
        after = time.monotonic_ns()
        sent.append((before, after, transmit_stamp(conn)))
    time.sleep(3)
    conn.close()


with dummy_server('ticks%d' % os.getpid(), period, os.path.join(outdir, 'jackd.log')) as env:
    env['ALSA_CONFIG_PATH'] = conf
    thread = threading.Thread(target=serve)
    thread.start()
    play = subprocess.run([binary, 'play', '--config', config, '--source', 'ws://127.0.0.1:%d/' % listener.getsockname()[1],
                           '--duration', str(lead + ticks * 0.5 + 2.5), '--buffer-frames', str(period)],
                          env=env, capture_output=True, text=True)
    thread.join()
open(os.path.join(outdir, 'stderr.txt'), 'w').write(play.stderr)

with wave.open(wav) as w:
    raw = w.readframes(w.getnframes())
samples = memoryview(raw).cast('h')
loud = [i // 2 for i in range(len(samples)) if samples[i] != 0]
onsets = [loud[0]] + [b for a, b in zip(loud, loud[1:]) if b - a > 4800]
if len(onsets) != len(sent):
    sys.exit(f'{len(onsets)} onsets for {len(sent)} edits sent; see {outdir}/stderr.txt')
json.dump({'sent_ns': sent, 'onsets': onsets}, open(os.path.join(outdir, 'ticks.json'), 'w'))


def deviations(reference):
    """How far each onset lands (samples) from where the sends say, around the median:
    whole-run, and against its six neighbours."""
    dev = [(o - onsets[0]) - (s - reference[0]) * 48e-6 for o, s in zip(onsets, reference)]
    median = statistics.median(dev)
    dev = [d - median for d in dev]
    return dev, [abs(d - statistics.median(dev[max(0, k - 3):k + 4])) for k, d in enumerate(dev)]


def line(name, values):
    a = sorted(abs(v) for v in values)
    return (f'{name}: within ±1 sample {100 * sum(v <= 1.0 for v in a) / len(a):.0f}%, median {a[len(a) // 2]:.1f}, '
            f'p90 {a[int(0.9 * (len(a) - 1))]:.1f}, max {a[-1]:.1f} samples')


widths = sorted((after - before) / 1e3 for before, after, _ in sent)
print(f'sendall() bracket: median {widths[len(widths) // 2]:.0f} µs, max {widths[-1]:.0f} µs')
kernel = [k for _, _, k in sent]
if None in kernel:
    print(f'no kernel transmit stamp for {kernel.count(None)} of {len(sent)} sends: '
          'measured against the clock read before sendall()')
    reference = [before for before, _, _ in sent]
else:
    reference = kernel
dev, near = deviations(reference)
print(line('whole run', dev))
print(line('against neighbours', near))
if reference is kernel:
    dev, near = deviations([before for before, _, _ in sent])
    print(line('(against the read before sendall(): whole run', dev) + ')')
    print(line('(against the read before sendall(): neighbours', near) + ')')
print('JACK xruns: %d' % open(os.path.join(outdir, 'jackd.log')).read().count('XRun'))
print(next((l for l in play.stderr.splitlines() if l.startswith('summary')), play.stderr[-300:]))
