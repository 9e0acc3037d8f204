//! A handler's error is the server's answer, not a broken connection: clients return it
//! at once instead of reconnecting and resending the batch.
//!
//! Riffle's and pynumaflow's servers report handler errors as `INTERNAL`; other SDKs
//! answer `UNKNOWN` (grpc-python for an uncaught exception, Go for a plain error). The
//! servers here are gRPC servers on Numaflow's own services that answer `UNKNOWN` the
//! way those SDKs do, and count how often they are called.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Code, Request, Response, Status, Streaming};

use riffle_numaflow::client::{ClientOptions, MapClient, MapMode, SideInputClient};
use riffle_numaflow::proto::map::v1 as map_pb;
use riffle_numaflow::proto::sideinput::v1 as side_pb;
use riffle_numaflow::{Datum, Error};

const HANDLER_ERROR: &str = "Exception calling application: boom";

/// A map server whose handler fails every request with `UNKNOWN`, after a proper
/// handshake; counts the streams opened.
#[derive(Clone, Default)]
struct FailingMap {
    streams: Arc<AtomicUsize>,
}

type MapStream = Pin<Box<dyn Stream<Item = Result<map_pb::MapResponse, Status>> + Send>>;

#[tonic::async_trait]
impl map_pb::map_server::Map for FailingMap {
    type MapFnStream = MapStream;

    async fn map_fn(
        &self,
        request: Request<Streaming<map_pb::MapRequest>>,
    ) -> Result<Response<MapStream>, Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok(Some(r)) = requests.message().await {
                let answer = if r.handshake.is_some_and(|h| h.sot) {
                    Ok(map_pb::MapResponse {
                        handshake: Some(map_pb::Handshake { sot: true }),
                        ..Default::default()
                    })
                } else {
                    Err(Status::unknown(HANDLER_ERROR))
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<map_pb::ReadyResponse>, Status> {
        Ok(Response::new(map_pb::ReadyResponse { ready: true }))
    }
}

/// A side-input retriever that fails every call with `UNKNOWN`; counts the calls.
#[derive(Clone, Default)]
struct FailingSideInput {
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl side_pb::side_input_server::SideInput for FailingSideInput {
    async fn retrieve_side_input(
        &self,
        _: Request<()>,
    ) -> Result<Response<side_pb::SideInputResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Status::unknown(HANDLER_ERROR))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<side_pb::ReadyResponse>, Status> {
        Ok(Response::new(side_pb::ReadyResponse { ready: true }))
    }
}

/// Serves `router` on `socket` in the background.
fn serve(router: tonic::transport::server::Router, socket: &std::path::Path) {
    let listener = UnixListener::bind(socket).unwrap();
    tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
}

/// Three retries allowed: a handler error must still be sent only once.
fn options(socket: &std::path::Path) -> ClientOptions {
    ClientOptions::new(socket)
        .without_server_info()
        .with_connect_timeout(Duration::from_secs(5))
        .with_request_timeout(Duration::from_secs(10))
        .with_retries(3)
}

fn assert_handler_error(err: &Error) {
    match err {
        Error::Rpc { status, .. } => {
            assert_eq!(status.code(), Code::Unknown, "{err}");
            assert_eq!(status.message(), HANDLER_ERROR, "{err}");
        }
        other => panic!("expected the handler's error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_handler_error_with_unknown_is_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    let server = FailingMap::default();
    serve(
        tonic::transport::Server::builder()
            .add_service(map_pb::map_server::MapServer::new(server.clone())),
        &socket,
    );
    let mut client = MapClient::connect_with_mode(options(&socket), MapMode::Unary)
        .await
        .unwrap();
    let err = client
        .map_batch(vec![Datum::new("a"), Datum::new("b")])
        .await
        .unwrap_err();
    assert_handler_error(&err);
    assert_eq!(
        server.streams.load(Ordering::SeqCst),
        1,
        "the batch was resent after the handler's error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_input_handler_error_with_unknown_is_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sideinput.sock");
    let server = FailingSideInput::default();
    serve(
        tonic::transport::Server::builder().add_service(
            side_pb::side_input_server::SideInputServer::new(server.clone()),
        ),
        &socket,
    );
    let mut client = SideInputClient::connect(options(&socket)).await.unwrap();
    let err = client.retrieve().await.unwrap_err();
    assert_handler_error(&err);
    assert_eq!(
        server.calls.load(Ordering::SeqCst),
        1,
        "the call was resent after the handler's error"
    );
}
