"""A private real-time JACK dummy server for the bench scripts (`cpu/cpu.py`,
`ticks/ticks.py`): started under a name of its own, waited for, and always stopped.

    with dummy_server('name', period, 'OUTDIR/jackd.log') as env:
        subprocess.run([...], env=env)   # clients find this server through env

Needs jackd and jack_wait (jackd2); run as root so that `jackd -R` gets real-time
priority.
"""
import contextlib, os, subprocess


@contextlib.contextmanager
def dummy_server(name, period, log_path):
    """A JACK dummy server at 48 kHz and `period` frames, logging to `log_path`; yields
    the environment under which JACK clients reach it (and never start another)."""
    jack = subprocess.Popen(['jackd', '-n', name, '-R', '-d', 'dummy', '-r', '48000', '-p', str(period)],
                            stdout=open(log_path, 'w'), stderr=subprocess.STDOUT)
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER='1')
    try:
        subprocess.run(['jack_wait', '-w', '-t', '10'], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield env
    finally:
        jack.terminate()
        jack.wait()
