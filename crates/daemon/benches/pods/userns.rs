//! `hack/bench-pods.sh PODS --userns`: what a user namespace adds to a
//! pod's start on berthd. Pods with and without one alternate on the same
//! berthd, so drift on the machine hits both alike. With one, the pod's
//! namespaces are made by a child process, and the container's rootfs is an
//! overlay on idmapped layers: no file of the image is chowned, so the cost
//! should be milliseconds whatever the image's size. (containerd 1.6 has
//! no user namespaces for pods: there is nothing to compare it with.)

use std::{path::Path, time::Duration};

use k8s_cri::v1::{self, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient};

use super::{channel, ms, p, pod_config, pod_ready_with, remove_all, start_berthd};

pub async fn compare(pods: usize, registry: &str, image: &str, work: &Path) {
    let berth = start_berthd(work, registry, 201);
    let ch = channel(&berth.socket).await;
    let (mut rt, mut img) = (RuntimeServiceClient::new(ch.clone()), ImageServiceClient::new(ch));
    img.pull_image(v1::PullImageRequest { image: Some(v1::ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() }).await.unwrap();
    let config = |name: &str, userns_range: Option<u32>| {
        let mut c = pod_config(&berth.logs, &format!("{}/{name}", berth.cgroup_parent), name);
        if let Some(range) = userns_range {
            // The kubelet's shape: 65536 ids from container id 0, a range of
            // its own per pod.
            let map = vec![v1::IdMapping { container_id: 0, host_id: 65536 * range, length: 65536 }];
            let opts = c.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut().unwrap();
            opts.userns_options = Some(v1::UserNamespace { mode: v1::NamespaceMode::Pod as i32, uids: map.clone(), gids: map });
        }
        c
    };
    for warmup in [config("warmup-plain", None), config("warmup-userns", Some(1))] {
        pod_ready_with(&mut rt, warmup, image).await;
    }
    remove_all(&mut rt).await;
    let (mut plain, mut userns): (Vec<[Duration; 4]>, Vec<[Duration; 4]>) = (Vec::new(), Vec::new());
    for i in 0..pods {
        let (total, [run, create, start], _) = pod_ready_with(&mut rt, config(&format!("plain{i}"), None), image).await;
        plain.push([total, run, create, start]);
        let (total, [run, create, start], _) = pod_ready_with(&mut rt, config(&format!("userns{i}"), Some(i as u32 + 2)), image).await;
        userns.push([total, run, create, start]);
    }
    remove_all(&mut rt).await;
    drop(berth);
    println!("pod ready (RunPodSandbox + CreateContainer + StartContainer), {pods} pods of each kind, alternating, on berthd:");
    println!("  {:24} {:>9} {:>9} {:>14} {:>16} {:>15}", "", "p50", "p90", "Run p50", "Create p50", "Start p50");
    for (name, samples) in [("without user namespace", &plain), ("with user namespace", &userns)] {
        let column = |k: usize| samples.iter().map(|s| s[k]).collect::<Vec<_>>();
        println!(
            "  {name:24} {:>9} {:>9} {:>14} {:>16} {:>15}",
            ms(p(&column(0), 50)),
            ms(p(&column(0), 90)),
            ms(p(&column(1), 50)),
            ms(p(&column(2), 50)),
            ms(p(&column(3), 50))
        );
    }
    let median = |s: &[[Duration; 4]]| p(&s.iter().map(|x| x[0]).collect::<Vec<_>>(), 50);
    println!("  a user namespace adds {:+.1} ms to the p50", (median(&userns).as_secs_f64() - median(&plain).as_secs_f64()) * 1000.0);
}
