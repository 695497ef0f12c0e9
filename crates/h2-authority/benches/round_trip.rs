//! What AuthorityRepair costs a gRPC call: the same unary-sized round trip
//! (berth's admin `Pull`, answered at once with one message) over a unix
//! socket, against a tonic server that reads its connections directly and
//! one that reads them through the repair, in the same run and interleaved
//! so that the machine's noise falls on both alike.
//!
//!   cargo bench -p berth-h2-authority --bench round_trip [-- CALLS]
//!
//! The client sends `localhost` as authority, as grpc-go, tonic and crictl
//! do: for them (the kubelet among them) the repair only scans frames, and
//! that is the cost measured. A client sending the socket path (grpc-core)
//! cannot be made with tonic (the `http` crate refuses such an authority)
//! and a plain server refuses it anyway, so there is nothing to compare.

use std::{path::Path, pin::Pin, time::Instant};

use berth_api::admin::v1::{
    images_client::ImagesClient,
    images_server::{Images, ImagesServer},
    pull_event::Event,
    HistoryRequest, HistoryResponse, ImportChunk, ImportResponse, LoginRequest, LoginResponse, PullEvent, PullRequest, Pulled, PushEvent, PushRequest,
    SaveChunk, SaveRequest, TagRequest, TagResponse,
};
use berth_h2_authority::AuthorityRepair;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::{wrappers::UnixListenerStream, Stream, StreamExt};
use tonic::{
    transport::{Channel, Endpoint, Server, Uri},
    Request, Response, Status, Streaming,
};

struct Echo;

#[tonic::async_trait]
impl Images for Echo {
    type PullStream = Pin<Box<dyn Stream<Item = Result<PullEvent, Status>> + Send>>;

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let pulled = Pulled { image_id: "sha256:0".into(), reference: request.into_inner().image };
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(PullEvent { event: Some(Event::Pulled(pulled)) })))))
    }

    async fn import(&self, _: Request<Streaming<ImportChunk>>) -> Result<Response<ImportResponse>, Status> {
        Err(not_measured())
    }

    type PushStream = Pin<Box<dyn Stream<Item = Result<PushEvent, Status>> + Send>>;

    async fn push(&self, _: Request<PushRequest>) -> Result<Response<Self::PushStream>, Status> {
        Err(not_measured())
    }

    type SaveStream = Pin<Box<dyn Stream<Item = Result<SaveChunk, Status>> + Send>>;

    async fn save(&self, _: Request<SaveRequest>) -> Result<Response<Self::SaveStream>, Status> {
        Err(not_measured())
    }

    async fn tag(&self, _: Request<TagRequest>) -> Result<Response<TagResponse>, Status> {
        Err(not_measured())
    }

    async fn history(&self, _: Request<HistoryRequest>) -> Result<Response<HistoryResponse>, Status> {
        Err(not_measured())
    }

    async fn login(&self, _: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        Err(not_measured())
    }
}

/// Only Pull, a small server-streaming call, is measured.
fn not_measured() -> Status {
    Status::unimplemented("not part of the benchmark")
}

fn serve(socket: &Path, repair: bool) {
    let incoming = UnixListenerStream::new(UnixListener::bind(socket).unwrap());
    let server = Server::builder().add_service(ImagesServer::new(Echo));
    if repair {
        tokio::spawn(server.serve_with_incoming(incoming.map(|conn| conn.map(AuthorityRepair::new))));
    } else {
        tokio::spawn(server.serve_with_incoming(incoming));
    }
}

async fn connect(socket: &Path, authority: &str) -> ImagesClient<Channel> {
    let path = socket.to_path_buf();
    let channel = Endpoint::try_from(format!("http://{authority}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap();
    ImagesClient::new(channel)
}

/// One call, timed: request out, the answer's one message and its end in.
async fn call(client: &mut ImagesClient<Channel>) -> f64 {
    let started = Instant::now();
    let mut answer = client.pull(PullRequest { image: "example.com/round/trip:1".into(), ..Default::default() }).await.unwrap().into_inner();
    while answer.message().await.unwrap().is_some() {}
    started.elapsed().as_secs_f64() * 1e6
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let calls: usize = std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let (plain, repaired) = (dir.path().join("plain.sock"), dir.path().join("repaired.sock"));
    serve(&plain, false);
    serve(&repaired, true);
    let mut clients = [
        ("plain server, authority localhost", connect(&plain, "localhost").await),
        ("repairing server, authority localhost", connect(&repaired, "localhost").await),
    ];
    let mut timings: Vec<Vec<f64>> = vec![Vec::with_capacity(calls); clients.len()];
    // Warm up, then take turns one call at a time.
    for (_, client) in clients.iter_mut() {
        for _ in 0..200 {
            call(client).await;
        }
    }
    for _ in 0..calls {
        for (i, (_, client)) in clients.iter_mut().enumerate() {
            timings[i].push(call(client).await);
        }
    }
    println!("gRPC round trip over a unix socket, {calls} calls each, interleaved (microseconds):");
    let mut p50s = Vec::new();
    for ((name, _), times) in clients.iter().zip(timings.iter_mut()) {
        times.sort_by(f64::total_cmp);
        let (p50, p90) = (percentile(times, 50), percentile(times, 90));
        println!("  {name:<40} p50 {p50:7.1}  p90 {p90:7.1}");
        p50s.push(p50);
    }
    println!("added by the repair at p50: {:+.1} us", p50s[1] - p50s[0]);
}
