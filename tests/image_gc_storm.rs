//! Garbage collection never takes what an operation in flight uses: pulls
//! of images that share layers, container creations on them, and
//! RemoveImage (each one a collection) all at once, on one berthd.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use berth_snapshot::{Kind, Overlay};
use common::{
    cri_calls,
    node::{container_config_for, Node},
};
use k8s_cri::v1::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

/// How long the storm blows: long enough for hundreds of collections.
const STORM: Duration = Duration::from_secs(20);

fn spec(image: &str) -> Option<v1::ImageSpec> {
    Some(v1::ImageSpec { image: image.into(), ..Default::default() })
}

/// What went wrong during the storm, reported together at the end.
type Failures = Arc<Mutex<Vec<String>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulls_and_creations_keep_their_layers_while_images_are_removed_and_collected() {
    let mut node = Node::start().await;
    // Three images, each the one before plus a layer: every pull and every
    // removal touches the layers the others use.
    let work = tempfile::tempdir().unwrap();
    berth_testkit::build_and_push(&node.registry, work.path(), "gc/base:1", None);
    berth_testkit::push_derived(&node.registry, work.path(), "gc/more:1");
    berth_testkit::push_derived(&node.registry, work.path(), "gc/most:1");
    let images: Arc<Vec<String>> = Arc::new(["gc/base:1", "gc/more:1", "gc/most:1"].iter().map(|i| format!("{}/{i}", node.registry.host())).collect());
    let pod = node.run_pod("gc-storm").await;
    let channel = common::channel(&node.berthd.socket).await;

    let failures: Failures = Arc::default();
    let (pulls, removals, started, raced) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let until = Instant::now() + STORM;
    let mut workers = Vec::new();
    for puller in 0..3 {
        let (mut img, images, failures, pulls) = (ImageServiceClient::new(channel.clone()), images.clone(), failures.clone(), pulls.clone());
        workers.push(tokio::spawn(async move {
            let mut turn = puller;
            while Instant::now() < until {
                let image = &images[turn % images.len()];
                turn += 1;
                // The registry is healthy: every pull must succeed, whatever
                // is removed meanwhile.
                match img.pull_image(v1::PullImageRequest { image: spec(image), ..Default::default() }).await {
                    Ok(_) => pulls.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failures.lock().unwrap().push(format!("pull {image}: {e}"));
                        continue;
                    }
                };
            }
        }));
    }
    {
        let (mut img, images, failures, removals) = (ImageServiceClient::new(channel.clone()), images.clone(), failures.clone(), removals.clone());
        workers.push(tokio::spawn(async move {
            let mut turn = 0;
            while Instant::now() < until {
                let image = &images[turn % images.len()];
                turn += 1;
                match img.remove_image(v1::RemoveImageRequest { image: spec(image) }).await {
                    Ok(_) => removals.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failures.lock().unwrap().push(format!("remove {image}: {e}"));
                        continue;
                    }
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    {
        let (mut img, mut rt, images, failures) =
            (ImageServiceClient::new(channel.clone()), RuntimeServiceClient::new(channel.clone()), images.clone(), failures.clone());
        let (pod, logs, started, raced) = (pod.clone(), node.logs.clone(), started.clone(), raced.clone());
        workers.push(tokio::spawn(async move {
            let mut turn = 0;
            while Instant::now() < until {
                let image = &images[turn % images.len()];
                turn += 1;
                if let Err(e) = img.pull_image(v1::PullImageRequest { image: spec(image), ..Default::default() }).await {
                    failures.lock().unwrap().push(format!("pull {image} to create on it: {e}"));
                    continue;
                }
                let config = container_config_for(&format!("c{turn}"), image, &["/bin/sh", "-c", "test -x /bin/busybox && ls /etc >/dev/null"]);
                let request = v1::CreateContainerRequest { pod_sandbox_id: pod.0.clone(), config: Some(config), sandbox_config: Some(pod.1.clone()) };
                let id = match rt.create_container(request).await {
                    Ok(r) => r.into_inner().container_id,
                    // Removed between our pull and our create: the one
                    // acceptable refusal, and it must say so.
                    Err(e) if e.code() == tonic::Code::NotFound => {
                        raced.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => {
                        failures.lock().unwrap().push(format!("create on {image}: {e}"));
                        continue;
                    }
                };
                let outcome = run_to_exit(&mut rt, &id).await;
                match outcome {
                    Ok(0) => {
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(code) => failures
                        .lock()
                        .unwrap()
                        .push(format!("container on {image} exited {code}: {:?}", std::fs::read_to_string(logs.join("gc-storm").join(format!("c{turn}.log"))))),
                    Err(e) => failures.lock().unwrap().push(format!("container on {image}: {e}")),
                }
                // Removing a container whose image is gone is a collection
                // too.
                if let Err(e) = rt.remove_container(v1::RemoveContainerRequest { container_id: id }).await {
                    failures.lock().unwrap().push(format!("remove container on {image}: {e}"));
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let (pulls, removals, started, raced) =
        (pulls.load(Ordering::Relaxed), removals.load(Ordering::Relaxed), started.load(Ordering::Relaxed), raced.load(Ordering::Relaxed));
    println!(
        "storm of {STORM:?}: {pulls} pulls, {removals} removals (each a collection), {started} containers ran, {raced} creations found their image removed"
    );
    assert!(failures.is_empty(), "{} failures, first ones: {:#?}", failures.len(), &failures[..failures.len().min(10)]);
    assert!(pulls >= 30 && removals >= 30 && started >= 5, "the storm did too little to show anything");

    // After the storm: every image still listed is whole. Its blobs are
    // there and hash to their digests; its layers are committed snapshots
    // with their files; and a container runs on it.
    let paths = berth_store::Paths::new(node.berthd.root(), node.berthd.dir.path().join("state"));
    let content = paths.blobs();
    let snapshots = Overlay::new(paths.snapshots()).unwrap();
    for image in images.iter() {
        node.img.pull_image(v1::PullImageRequest { image: spec(image), ..Default::default() }).await.unwrap();
    }
    let index = berth_image::index::ImageIndex::open(&paths).unwrap();
    let listed = node.img.list_images(v1::ListImagesRequest::default()).await.unwrap().into_inner().images;
    for image in &listed {
        let record = index.resolve(&image.id).unwrap_or_else(|| panic!("{} is listed but has no record", image.id));
        for blob in &record.blobs {
            let bytes = std::fs::read(content.join(&blob["sha256:".len()..])).unwrap_or_else(|e| panic!("{:?}: blob {blob}: {e}", record.repo_tags));
            assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))), *blob, "{:?}: blob {blob} does not verify", record.repo_tags);
        }
        for chain in &record.chain_ids {
            let info = snapshots.stat(chain).unwrap_or_else(|e| panic!("{:?}: layer {chain}: {e}", record.repo_tags));
            assert_eq!(info.kind, Kind::Committed);
            assert!(snapshots.fs_dir(&info).is_dir(), "{:?}: layer {chain} has no files", record.repo_tags);
        }
    }
    for (n, image) in images.iter().enumerate() {
        let config = container_config_for(&format!("after{n}"), image, &["/bin/sh", "-c", "test -x /bin/busybox"]);
        let id = node.create(&pod, config).await.unwrap();
        assert_eq!(run_to_exit(&mut node.rt, &id).await.unwrap(), 0, "a container on {image} after the storm");
    }
    node.teardown().await;
}

/// Starts a created container and waits for its exit code.
async fn run_to_exit(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> Result<i32, tonic::Status> {
    rt.start_container(v1::StartContainerRequest { container_id: id.into() }).await?;
    let status = cri_calls::wait_exited(rt, id, Duration::from_secs(30), String::new).await;
    Ok(status.exit_code)
}
