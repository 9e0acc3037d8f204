//! The HTTP server: the page and the API behind the [guard](crate::guard), on a socket.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{ApiError, ErrorBody, StartError};
use crate::guard::{BadToken, Guard, guard};
use crate::{Dashboard, api, assets};

/// The whole app (page, assets, API) for `dashboard`, behind `guard`.
pub fn app(dashboard: Dashboard, guard_with: Guard) -> Router {
    Router::new()
        .merge(assets::routes())
        .merge(api::routes())
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(format!("there is nothing at {}", uri.path()))
        })
        .with_state(dashboard)
        .layer(CatchPanicLayer::custom(|_panic| -> Response {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(ErrorBody {
                    error: "the dashboard failed while answering this request".into(),
                }),
            )
                .into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(guard_with, guard))
}

/// A dashboard bound to its address, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    router: Router,
}

impl Server {
    /// Binds `addr` for `dashboard`, requiring `token` when given. On a loopback
    /// address, requests must also name a loopback host (see [`crate::guard`]).
    pub async fn bind(
        dashboard: Dashboard,
        addr: SocketAddr,
        token: Option<&str>,
    ) -> Result<Self, StartError> {
        let guard_with = Guard::new(token, addr.ip().is_loopback())
            .map_err(|e: BadToken| StartError::BadToken(e.to_string()))?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Self {
            listener,
            router: app(dashboard, guard_with),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(StartError::Serve)
    }
}

/// Serves `dashboard` on `addr` until Ctrl-C, on a tokio runtime of its own (for
/// command lines that are not async); `ready` hears the bound address first.
///
/// ```no_run
/// let dashboard = riffle_ui::Dashboard::open(".riffle/metadata.db")?;
/// riffle_ui::server::serve_until_ctrl_c(dashboard, "127.0.0.1:8080".parse().unwrap(), None, |addr| {
///     println!("dashboard on http://{addr}");
/// })?;
/// # Ok::<(), riffle_ui::StartError>(())
/// ```
pub fn serve_until_ctrl_c(
    dashboard: Dashboard,
    addr: SocketAddr,
    token: Option<&str>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), StartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(StartError::Serve)?;
    runtime.block_on(async {
        let server = Server::bind(dashboard, addr, token).await?;
        ready(server.local_addr());
        server
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}

/// A dashboard served from a thread of its own, for programs that are not async (the
/// `riffle bench ui` workload, embedding); it stops when dropped.
pub struct Background {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), StartError>>>,
}

impl Background {
    /// Binds `addr` and serves `dashboard` on a new thread.
    ///
    /// ```no_run
    /// let dashboard = riffle_ui::Dashboard::open(".riffle/metadata.db")?;
    /// let server = riffle_ui::server::Background::spawn(dashboard, "127.0.0.1:0".parse().unwrap(), None)?;
    /// println!("serving on {}", server.addr());
    /// # Ok::<(), riffle_ui::StartError>(())
    /// ```
    pub fn spawn(
        dashboard: Dashboard,
        addr: SocketAddr,
        token: Option<&str>,
    ) -> Result<Self, StartError> {
        let token = token.map(str::to_string);
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("riffle-ui".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(StartError::Serve)?;
                runtime.block_on(async move {
                    let server = match Server::bind(dashboard, addr, token.as_deref()).await {
                        Ok(s) => s,
                        Err(e) => {
                            let message = e.to_string();
                            let _ = bound_tx.send(Err(e));
                            return Err(StartError::Serve(std::io::Error::other(message)));
                        }
                    };
                    let _ = bound_tx.send(Ok(server.local_addr()));
                    server
                        .run(async move {
                            let _ = stopped.await;
                        })
                        .await
                })
            })
            .map_err(StartError::Serve)?;
        let addr = bound_rx.recv().map_err(|_| {
            StartError::Serve(std::io::Error::other("the dashboard thread stopped early"))
        })??;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
