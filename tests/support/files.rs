//! A static HTTP file server on 127.0.0.1, standing in for a folder of files on the web
//! (an OpenStreetMap replication folder): `GET /a/b.txt` answers the file `a/b.txt`
//! under its root as it is on disk at that moment, so a test can change the folder
//! while a client polls it. A path that is missing (or leaves the root) is a 404.
//!
//! It runs on its own thread with its own tokio runtime, so plain `#[test]` functions
//! can use it, and it counts the requests it answered per path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

#[derive(Default)]
struct Shared {
    /// Requests per path, with the status answered.
    requests: Mutex<BTreeMap<String, Vec<u16>>>,
}

pub struct FileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serve the files under `root`.
    pub fn start(root: &Path) -> FileServer {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the listening address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("cannot make the listener non-blocking: {e}"));
        let shared = Arc::new(Shared::default());
        let (shutdown, stop) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build the file server's runtime: {e}"));
        let state = (root.to_owned(), Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name(format!("file-server-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => panic!("cannot adopt the listener: {e}"),
                    };
                    let app = axum::Router::new().fallback(serve).with_state(state);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop.await;
                        })
                        .await;
                });
            })
            .unwrap_or_else(|e| panic!("cannot start the file server thread: {e}"));
        FileServer {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The statuses answered to requests for `path` (`/state.txt`), in order.
    pub fn requests(&self, path: &str) -> Vec<u16> {
        self.shared
            .requests
            .lock()
            .map(|r| r.get(path).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(State((root, shared)): State<(PathBuf, Arc<Shared>)>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    let relative = Path::new(path.trim_start_matches('/'));
    let inside = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let answer = if inside {
        tokio::fs::read(root.join(relative)).await.ok()
    } else {
        None
    };
    let status = if answer.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    if let Ok(mut requests) = shared.requests.lock() {
        requests.entry(path).or_default().push(status.as_u16());
    }
    match answer {
        Some(bytes) => (status, bytes).into_response(),
        None => (status, "not found").into_response(),
    }
}
