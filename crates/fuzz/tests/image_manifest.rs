//! A registry's manifest, index and image config JSON, through the checks
//! and parses a pull applies (`berth_image::parse_manifest_answer`,
//! `berth_image::pull::parse_config`).
//!
//! Input layout for `image_manifest`: the first line is the Content-Type
//! header (empty: none sent), the rest the body. Checked: no panic; an
//! accepted manifest serialises and parses back to the same JSON (what
//! berth stores is what it read); a header that names a type other than
//! the body's is refused.

use berth_fuzz::Target;

const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":500,"platform":{"architecture":"amd64","os":"linux"}},
{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":501,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":1200},
"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444","size":3000,"annotations":{"a":"b"}}],
"annotations":{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}"#;

const DOCKER_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1469,"digest":"sha256:5555555555555555555555555555555555555555555555555555555555555555"},
"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2000,"digest":"sha256:6666666666666666666666666666666666666666666666666666666666666666"}]}"#;

const CONFIG: &str = r#"{"architecture":"amd64","os":"linux","config":{"User":"1000:1000","Env":["PATH=/bin"],"Cmd":["sh"]},
"rootfs":{"type":"layers","diff_ids":["sha256:7777777777777777777777777777777777777777777777777777777777777777","sha256:8888888888888888888888888888888888888888888888888888888888888888"]}}"#;

fn answer(content_type: &str, body: &str) -> Vec<u8> {
    format!("{content_type}\n{body}").into_bytes()
}

#[test]
fn image_manifest() {
    Target::new("image_manifest")
        .seed("index", answer("application/vnd.oci.image.index.v1+json", INDEX))
        .seed("manifest", answer("application/vnd.oci.image.manifest.v1+json; charset=utf-8", MANIFEST))
        .seed("docker-manifest", answer("application/json", DOCKER_MANIFEST))
        .seed("no-header", answer("", MANIFEST))
        .seed("mismatch", answer("application/vnd.oci.image.index.v1+json", MANIFEST))
        .run(|input| {
            let (header, body) = match input.iter().position(|b| *b == b'\n') {
                Some(i) => (&input[..i], &input[i + 1..]),
                None => (&b""[..], input),
            };
            let header = std::str::from_utf8(header).ok().filter(|h| !h.is_empty());
            let Ok(manifest) = berth_image::parse_manifest_answer(header, body) else { return };
            let stored = serde_json::to_vec(&manifest).expect("an accepted manifest serialises");
            let again = berth_image::parse_manifest_answer(None, &stored).unwrap_or_else(|e| panic!("berth refuses what it accepted and wrote back: {e}"));
            assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&manifest).unwrap(), "the round trip changed the manifest");
            // What the body says it is, the header may not contradict.
            let body_type = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v["mediaType"].as_str().map(String::from));
            let header_type = header.map(|h| h.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
            if let (Some(body_type), Some(header_type)) = (body_type, header_type) {
                assert!(
                    header_type == body_type || header_type == "application/json" || header_type == "application/octet-stream",
                    "served as {header_type:?}, body says {body_type:?}, and it was accepted"
                );
            }
        });
}

#[test]
fn image_config() {
    Target::new("image_config").seed("config", CONFIG).seed("minimal", r#"{"rootfs":{"diff_ids":[]}}"#).run(|input| {
        let Ok(text) = std::str::from_utf8(input) else { return };
        let Ok((diff_ids, user)) = berth_image::pull::parse_config(text) else { return };
        let value: serde_json::Value = serde_json::from_str(text).expect("an accepted config is JSON");
        assert_eq!(diff_ids.len(), value["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len));
        assert_eq!(user, value["config"]["User"].as_str().unwrap_or(""));
        // chain IDs are defined for any list of diff IDs.
        assert_eq!(berth_image::pull::chain_ids(&diff_ids).len(), diff_ids.len());
    });
}
