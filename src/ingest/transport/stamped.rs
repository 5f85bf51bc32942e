//! A TCP connection that knows when its bytes reached the machine.
//!
//! A note is scheduled a fixed latency after its event's arrival, so the arrival must be
//! the same instant for every event, however busy the machine is. Read after the
//! network task has been woken, scheduled and has parsed the message, "now" comes tens
//! of microseconds to milliseconds after the bytes arrived, differently each time. The
//! kernel stamps every packet as it receives it: with `SO_TIMESTAMPNS` on the socket,
//! each read also returns the receive time of the last packet it consumed, and
//! [`Stamp::instant`] gives it on the monotonic clock the engine schedules by. Where the
//! kernel gives no stamp, the time of the read stands in: on an old kernel, and for the
//! first packets after stamping is first asked for on the machine, which the kernel
//! turns on a moment later.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A stamp older than this is no stamp of a read just made (the wall clock was set
/// meanwhile): the read's own time is used instead.
const STALE: Duration = Duration::from_secs(1);

/// The kernel's receive time of the last packet read, shared between the connection
/// and whoever reads messages from it.
#[derive(Debug, Default)]
pub struct Stamp {
    /// Wall-clock (`CLOCK_REALTIME`) nanoseconds since the Unix epoch; 0 for none.
    realtime_ns: AtomicU64,
}

impl Stamp {
    /// When the bytes of the last read reached the machine, on the monotonic clock;
    /// `None` if the kernel stamped nothing (then "now" is the best there is).
    pub fn instant(&self) -> Option<Instant> {
        let ns = self.realtime_ns.load(Relaxed);
        if ns == 0 {
            return None;
        }
        // The stamp is on the wall clock: its age, read against the wall clock now,
        // carries over to the monotonic one. Both clocks are read back to back.
        let (wall, mono) = (SystemTime::now(), Instant::now());
        let age = wall
            .duration_since(UNIX_EPOCH + Duration::from_nanos(ns))
            .ok()?;
        (age <= STALE).then(|| mono.checked_sub(age)).flatten()
    }

    fn set(&self, ns: u64) {
        self.realtime_ns.store(ns, Relaxed);
    }
}

/// A connected TCP stream whose reads record the kernel's receive stamp.
pub struct StampedTcp {
    inner: TcpStream,
    stamp: Arc<Stamp>,
}

impl StampedTcp {
    /// Ask the kernel to stamp what this stream receives. Without stamps (an old or
    /// unusual kernel) the stream still works, and [`Stamp::instant`] says `None`.
    pub fn new(inner: TcpStream) -> (StampedTcp, Arc<Stamp>) {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor, and an int option of the right size.
        let set = unsafe {
            libc::setsockopt(
                inner.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set != 0 {
            tracing::debug!(
                "no kernel receive stamps on this connection ({}): arrivals are read times",
                io::Error::last_os_error()
            );
        }
        let stamp = Arc::new(Stamp::default());
        (
            StampedTcp {
                inner,
                stamp: stamp.clone(),
            },
            stamp,
        )
    }

    /// One `recvmsg` into `buf`, recording the stamp that comes with it.
    fn receive(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one control message holding a timespec, aligned as cmsghdr wants.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; every pointer set below outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: a valid descriptor and a msghdr whose buffers are valid for its lengths.
        let n = unsafe { libc::recvmsg(self.inner.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(ns) = timestamp_of(&msg) {
            self.stamp.set(ns);
        }
        Ok(n as usize)
    }
}

/// The `SCM_TIMESTAMPNS` control message of a `recvmsg`, as nanoseconds since the epoch.
fn timestamp_of(msg: &libc::msghdr) -> Option<u64> {
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control buffer the kernel filled,
    // within msg_controllen; CMSG_DATA of an SCM_TIMESTAMPNS message is a timespec.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let ns = u64::try_from(ts.tv_sec).ok()? * 1_000_000_000
                    + u64::try_from(ts.tv_nsec).ok()?;
                return (ns > 0).then_some(ns);
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

impl AsyncRead for StampedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match this
                .inner
                .try_io(Interest::READABLE, || this.receive(unfilled))
            {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale: wait for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for StampedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes written on loopback are stamped by the kernel when they are sent; read
    /// 50 ms later, their stamp is still the sending time, not the reading one.
    #[test]
    fn a_late_read_still_gets_the_instant_the_bytes_arrived() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a listener");
            let addr = listener.local_addr().expect("an address");
            let client = TcpStream::connect(addr).await.expect("connected");
            let (mut server, _) = listener.accept().await.expect("accepted");
            let (mut stamped, stamp) = StampedTcp::new(client);
            assert!(stamp.instant().is_none(), "no stamp before any read");
            // The kernel turns receive stamping on a moment after the first socket
            // asks for it (deferred work), so the first packets may come unstamped.
            let asked = Instant::now();
            let mut byte = [0u8; 1];
            while stamp.instant().is_none() {
                assert!(
                    asked.elapsed() < Duration::from_secs(2),
                    "the kernel gave no receive stamp within 2 s of SO_TIMESTAMPNS"
                );
                server.write_all(b".").await.expect("sent");
                stamped.read_exact(&mut byte).await.expect("read");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let sent = Instant::now();
            server.write_all(b"hello").await.expect("sent");
            std::thread::sleep(Duration::from_millis(50));
            let mut got = [0u8; 16];
            let n = stamped.read(&mut got).await.expect("read");
            let read_at = Instant::now();
            assert_eq!(&got[..n], b"hello");
            let arrived = stamp.instant().expect("a stamp, as for the packets before");
            let after_send = arrived.saturating_duration_since(sent);
            assert!(
                arrived + Duration::from_millis(2) >= sent && after_send < Duration::from_millis(5),
                "stamped {after_send:?} after the send, read {:?} after it",
                read_at - sent
            );
            // And the writing side still works.
            stamped.write_all(b"back").await.expect("written");
            let mut back = [0u8; 4];
            server.read_exact(&mut back).await.expect("read back");
            assert_eq!(&back, b"back");
        });
    }
}
