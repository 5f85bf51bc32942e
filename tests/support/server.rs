//! A test server's thread: a listener on 127.0.0.1, served on a thread of its own with
//! its own tokio runtime, stopped and joined when dropped. The scripted servers
//! ([`super::ws`], [`super::files`]) each bring only what they serve.

use std::future::Future;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub struct ServerThread {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Listen on 127.0.0.1:`port` (0: any free port) and run `serve(listener, stop)`
    /// on a thread named `name`-PORT; `stop` resolves when the server is dropped, and
    /// whatever `serve` left running is cancelled with its runtime.
    pub fn start<F, Fut>(port: u16, name: &str, serve: F) -> ServerThread
    where
        F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the listening address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("cannot make the listener non-blocking: {e}"));
        let (shutdown, stop) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build the {name}'s runtime: {e}"));
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .unwrap_or_else(|e| panic!("cannot adopt the listener: {e}"));
                    serve(listener, stop).await;
                });
            })
            .unwrap_or_else(|e| panic!("cannot start the {name}'s thread: {e}"));
        ServerThread {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
