//! `berthctl images import`: a `docker save` archive or an OCI layout as
//! one tar stream (`berth_image::import::import_archive`), which berthd
//! reads from a client and unpacks like a pulled image.
//!
//! Each input is imported into a fresh content store and snapshotter in
//! `<tmp>/root`, with `<tmp>/canary` beside it. Checked: no panic; the
//! canary is untouched; every blob an accepted image names is in the store
//! and hashes to its digest; an image has one chain ID per layer.

use std::{collections::BTreeMap, fs, io::Write, path::Path};

use berth_fuzz::Target;
use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn layer() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    tar.append_data(&mut dir, "etc", &b""[..]).unwrap();
    let data = b"root:x:0:0::/root:/bin/sh\n";
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o644);
    file.set_size(data.len() as u64);
    tar.append_data(&mut file, "etc/passwd", &data[..]).unwrap();
    tar.into_inner().unwrap()
}

fn config(layer: &[u8]) -> Vec<u8> {
    format!(r#"{{"architecture":"amd64","os":"linux","config":{{"User":"0"}},"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#, sha256_hex(layer))
        .into_bytes()
}

fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, name, *data).unwrap();
    }
    tar.into_inner().unwrap()
}

fn docker_save() -> Vec<u8> {
    let (layer, config) = (layer(), config(&layer()));
    let manifest = br#"[{"Config":"cfg.json","RepoTags":["example.com/app:1"],"Layers":["abc/layer.tar"]}]"#;
    archive(&[("cfg.json", &config), ("abc/layer.tar", &layer), ("manifest.json", manifest)])
}

fn oci_layout() -> Vec<u8> {
    let (layer, config) = (layer(), config(&layer()));
    let (layer_hex, config_hex) = (sha256_hex(&layer), sha256_hex(&config));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_hex}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let manifest_hex = sha256_hex(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_hex}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"example.com/app:1"}}}}]}}"#,
        manifest.len()
    );
    let paths = [format!("blobs/sha256/{layer_hex}"), format!("blobs/sha256/{config_hex}"), format!("blobs/sha256/{manifest_hex}")];
    archive(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        (&paths[0], &layer),
        (&paths[1], &config),
        (&paths[2], manifest.as_bytes()),
        ("index.json", index.as_bytes()),
    ])
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn listing(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap()).map(|e| (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap_or_default())).collect()
}

#[test]
fn image_archive() {
    let docker = docker_save();
    let oci = oci_layout();
    Target::new("image_archive").seed("docker-save.tar", docker).seed("oci-layout.tar.gz", gzip(&oci)).seed("oci-layout.tar", oci).run(|input| {
        let tmp = tempfile::tempdir().unwrap();
        let canary = tmp.path().join("canary");
        fs::create_dir(&canary).unwrap();
        fs::write(canary.join("file"), "canary").unwrap();
        let before = listing(&canary);
        let paths = berth_store::Paths::new(tmp.path().join("root"), tmp.path().join("state"));
        let content = berth_image::content::ContentStore::new(&paths).unwrap();
        let snapshots = berth_snapshot::Overlay::new(paths.snapshots()).unwrap();
        let lease = berth_image::lease::Leases::new().lease();
        let result = berth_image::import::import_archive(input, Some("example.com/base"), &content, &snapshots, &lease);
        assert_eq!(listing(&canary), before, "the canary beside the store changed");
        let mut beside: Vec<String> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        beside.sort();
        assert!(beside.iter().all(|n| ["canary", "root", "state"].contains(&n.as_str())), "the import wrote beside its store: {beside:?}");
        let Ok(images) = result else { return };
        for image in images {
            assert_eq!(image.chain_ids.len() + 1, image.blobs.len(), "one chain ID per layer, blobs are the config and the layers: {image:?}");
            for digest in &image.blobs {
                let bytes = fs::read(content.blob_path(digest).unwrap()).unwrap_or_else(|e| panic!("{digest} is named but not stored: {e}"));
                assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), *digest, "a stored blob does not match its digest");
            }
        }
    });
}
