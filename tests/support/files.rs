//! A static HTTP file server on 127.0.0.1, standing in for a folder of files on the web
//! (an OpenStreetMap replication folder): `GET /a/b.txt` answers the file `a/b.txt`
//! under its root as it is on disk at that moment, so a test can change the folder
//! while a client polls it. A path that is missing (or leaves the root) is a 404.
//!
//! It runs on its own thread with its own tokio runtime, so plain `#[test]` functions
//! can use it, and it counts the requests it answered per path.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::server::ServerThread;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Default)]
struct Shared {
    /// Requests per path, with the status answered.
    requests: Mutex<BTreeMap<String, Vec<u16>>>,
}

pub struct FileServer {
    shared: Arc<Shared>,
    server: ServerThread,
}

impl FileServer {
    /// Serve the files under `root`.
    pub fn start(root: &Path) -> FileServer {
        let shared = Arc::new(Shared::default());
        let state = (root.to_owned(), Arc::clone(&shared));
        let server = ServerThread::start(0, "file-server", move |listener, stop| async move {
            let app = axum::Router::new().fallback(serve).with_state(state);
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await;
        });
        FileServer { shared, server }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.server.addr())
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
