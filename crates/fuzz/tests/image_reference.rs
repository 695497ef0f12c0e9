//! Image references through berth's own parser (`berth_image::reference`),
//! against oci-spec's regular-expression parser (what oci-client's
//! `Reference::from_str` runs) as the oracle.
//!
//! Checked: no panic; the two agree on every input (both refuse, or both
//! accept with the same registry, repository, tag and digest), except where
//! berth is deliberately stricter, as Docker and containerd are: a tag that
//! is not ASCII, a first component that is not a registry host but has
//! capitals, a first component that names a registry (`.` or `:` in it) but
//! is not a valid host, and a digest with uppercase hex. And what berth accepts, it accepts again in its normalised
//! form, unchanged.

use berth_fuzz::Target;

#[test]
fn image_reference() {
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    Target::new("image_reference")
        .seed("official", "busybox")
        .seed("hub-tag", "library/busybox:1.36")
        .seed("registry-port", "127.0.0.1:5000/team/app:v1.0_rc-1")
        .seed("localhost", "localhost/app")
        .seed("separators", "my-org/a__b/c.d_e---f:V1")
        .seed("digest", format!("quay.io/x/y@{digest}"))
        .seed("tag-digest", format!("registry.k8s.io/pause:3.10@{digest}"))
        .seed("sha512", format!("h.io/a@sha512:{}", "ab".repeat(64)))
        .seed("port-only", "localhost:5000")
        .run(|input| {
            let Ok(text) = std::str::from_utf8(input) else { return };
            let ours = berth_image::reference::parse(text);
            let theirs = text.parse::<oci_client::Reference>();
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(
                        (a.registry(), a.repository(), a.tag(), a.digest()),
                        (b.registry(), b.repository(), b.tag(), b.digest()),
                        "{text:?} parses differently"
                    );
                }
                (Err(_), Err(_)) => {}
                (Ok(a), Err(e)) => panic!("{text:?}: berth accepts ({}), oci-spec refuses: {e}", a.whole()),
                (Err(e), Ok(b)) => assert!(berth_is_stricter_on_purpose(text), "{text:?}: berth refuses ({e}), oci-spec accepts as {}", b.whole()),
            }
            if let Ok(reference) = ours {
                let again = berth_image::reference::parse(&reference.whole()).unwrap_or_else(|e| panic!("{:?} refused: {e}", reference.whole()));
                assert_eq!(again.whole(), reference.whole(), "normalising {text:?} twice changed it");
            }
        });
}

/// The differences the module's documentation names.
fn berth_is_stricter_on_purpose(text: &str) -> bool {
    if text.split_once('@').is_some_and(|(_, digest)| digest.bytes().any(|b| b.is_ascii_uppercase())) {
        return true;
    }
    let name = text.split('@').next().unwrap_or("");
    let last = name.rfind('/').map_or(0, |i| i + 1);
    let tag = name[last..].split_once(':').map(|(_, t)| t);
    if tag.is_some_and(|t| !t.is_ascii()) {
        return true;
    }
    match name.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => !is_host(first),
        Some((first, _)) => first.bytes().any(|b| b.is_ascii_uppercase()),
        None => false,
    }
}

fn is_host(registry: &str) -> bool {
    let host = registry.split(':').next().unwrap_or("");
    host.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}
