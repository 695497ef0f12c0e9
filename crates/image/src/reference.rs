//! Image references (`busybox`, `127.0.0.1:5000/app:1.0`,
//! `quay.io/x/y@sha256:…`) parsed by hand, by the grammar of the
//! distribution project's `reference` package, normalised the way the
//! kubelet and Docker mean them (`busybox` is
//! `docker.io/library/busybox:latest`).
//!
//! Why not `oci_client::Reference::from_str` (oci-spec's parser): it
//! matches one regular expression whose `\w` is Unicode-aware, and the
//! compiled program is kept for the life of the process. In berthd that
//! was 13 MiB of its 15 MiB of heap after the first pull or ImageStatus
//! (measured with a release build: anonymous memory 1.5 MiB at start,
//! 15.7 MiB after one pull). The grammar is small and stable, so berth
//! checks it with a few loops instead, and still hands out oci-client's
//! `Reference` (built with its constructors, which parse nothing).
//!
//! It accepts what oci-spec's parser accepts, with exceptions that follow
//! Docker and containerd: a tag is ASCII (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`;
//! the distribution grammar's `\w` is Go's, which is ASCII); a first
//! component that is not a registry host (no `.` or `:`, not `localhost`)
//! is part of the repository, so it must be lowercase (`Foo/bar` is
//! refused, where oci-spec made it `docker.io/Foo/bar`); one that names a
//! host must be a valid host; and a digest's hex is lowercase, as
//! go-digest has it. The fuzz target `image_reference` (crates/fuzz)
//! compares the two parsers on every input.

use oci_client::Reference;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const OFFICIAL_IMAGES: &str = "library";
const DEFAULT_TAG: &str = "latest";
/// The longest repository name (after normalisation) a registry takes.
const MAX_REPOSITORY: usize = 255;
const MAX_TAG: usize = 128;

/// Parses and normalises `image`; the error says what is wrong with it.
pub fn parse(image: &str) -> Result<Reference, String> {
    if image.is_empty() {
        return Err("the reference is empty".into());
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(check_digest(digest)?)),
        None => (image, None),
    };
    // A tag follows the last `:` after the last `/`; a `:` before that
    // `/` is a registry's port.
    let last_component = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_component..].find(':') {
        Some(i) => (&rest[..last_component + i], Some(check_tag(&rest[last_component + i + 1..])?)),
        None => (rest, None),
    };
    let (registry, repository) = split_registry(name)?;
    if repository.len() > MAX_REPOSITORY {
        return Err(format!("the repository name is longer than {MAX_REPOSITORY} characters"));
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into()),
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or(DEFAULT_TAG).into()),
    })
}

/// `registry/path`, `path` (Docker Hub) or `name` (an official image).
fn split_registry(name: &str) -> Result<(String, String), String> {
    let (registry, path) = match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
            check_registry(first)?;
            (first, path)
        }
        _ => (DOCKER_HUB, name),
    };
    for component in path.split('/') {
        check_path_component(component)?;
    }
    let registry = if registry == DOCKER_HUB_LEGACY { DOCKER_HUB } else { registry };
    let repository = if registry == DOCKER_HUB && !path.contains('/') { format!("{OFFICIAL_IMAGES}/{path}") } else { path.to_string() };
    Ok((registry.to_string(), repository))
}

/// `host[:port]`, host being dot-separated labels of letters, digits and
/// inner dashes.
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label_ok = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-');
    if !host.split('.').all(label_ok) {
        return Err(format!("{registry:?} is not a registry host"));
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{registry:?} has no valid port"));
        }
    }
    Ok(())
}

/// Lowercase letters and digits, in runs joined by one `.`, one `_`, two
/// `_`, or any number of `-`.
fn check_path_component(component: &str) -> Result<(), String> {
    let bad = || Err(format!("{component:?} is not a valid repository name component (lowercase letters, digits and inner separators)"));
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let dashes = separator.bytes().all(|b| b == b'-');
        if !(dashes || separator == "." || separator == "_" || separator == "__") {
            return bad();
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<&str, String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = match tag.as_bytes() {
        [first, rest @ ..] => word(*first) && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-') && tag.len() <= MAX_TAG,
        [] => false,
    };
    if ok {
        Ok(tag)
    } else {
        Err(format!("{tag:?} is not a valid tag (letters, digits, `_`, `.` and `-`, at most {MAX_TAG}, not starting with `.` or `-`)"))
    }
}

/// `algorithm:hex`, the hex as long as the algorithm's sum.
fn check_digest(digest: &str) -> Result<&str, String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("{digest:?} is not a digest (algorithm:hex)"));
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .split(['-', '_', '+', '.'])
            .all(|c| c.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && c.bytes().all(|b| b.is_ascii_alphanumeric()));
    // Lowercase only, as go-digest and containerd have it: the content
    // store names blobs by the lowercase hex.
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("{digest:?} is not a digest (algorithm:hex)"));
    }
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("{algorithm:?} is not a supported digest algorithm (sha256, sha384, sha512)")),
    };
    if hex.len() != want {
        return Err(format!("a {algorithm} digest has {want} hex digits, not {}", hex.len()));
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(s: &str) -> String {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).whole()
    }

    #[test]
    fn names_normalise_as_the_kubelet_means_them() {
        let d = "a".repeat(64);
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest".to_string()),
            ("library/busybox:1.36", "docker.io/library/busybox:1.36".into()),
            ("index.docker.io/busybox", "docker.io/library/busybox:latest".into()),
            ("docker.io/team/app", "docker.io/team/app:latest".into()),
            ("127.0.0.1:5000/app:1.0", "127.0.0.1:5000/app:1.0".into()),
            ("localhost/app", "localhost/app:latest".into()),
            ("localhost:5000", "docker.io/library/localhost:5000".into()),
            ("test.com:tag", "docker.io/library/test.com:tag".into()),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10".into()),
            ("my-org/a__b/c.d_e---f:V1_x.y-z", "docker.io/my-org/a__b/c.d_e---f:V1_x.y-z".into()),
            ("Upper.Case-host:443/x/y", "Upper.Case-host:443/x/y:latest".into()),
            (&format!("quay.io/x/y@sha256:{d}"), format!("quay.io/x/y@sha256:{d}")),
            (&format!("app:1@sha256:{d}"), format!("docker.io/library/app:1@sha256:{d}")),
        ] {
            assert_eq!(whole(input), want, "{input}");
        }
        let r = parse(&format!("quay.io/x/y@sha256:{d}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (None, Some(format!("sha256:{d}").as_str())));
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let d = "a".repeat(64);
        for (input, says) in [
            ("", "empty"),
            ("UPPER/Case", "\"UPPER\""),
            ("Busybox", "\"Busybox\""),
            ("busybox:", "not a valid tag"),
            ("busybox:.x", "not a valid tag"),
            ("busybox:é", "not a valid tag"),
            ("a//b", "\"\""),
            ("a/-b", "\"-b\""),
            ("a_.b", "\"a_.b\""),
            ("a___b", "\"a___b\""),
            ("host-.com/a", "not a registry host"),
            ("host.com:/a", "no valid port"),
            ("host.com:x1/a", "no valid port"),
            ("a@sha256:abc", "not a digest"),
            ("a@md5:0123456789abcdef0123456789abcdef", "not a supported digest algorithm"),
            ("a@sha256:0123456789abcdef0123456789abcdef", "has 64 hex digits"),
            ("a@sha256:g123456789abcdef0123456789abcdef", "not a digest"),
            ("a@1sha:0123456789abcdef0123456789abcdef", "not a digest"),
            ("a@@sha256:x", "not a digest"),
            (&format!("a@sha256:{}", "A".repeat(64)), "not a digest"),
        ] {
            let e = parse(input).unwrap_err();
            assert!(e.contains(says), "{input:?}: {e}");
        }
        assert!(parse(&format!("a:{}", "t".repeat(129))).is_err());
        assert!(parse(&format!("a:{}", "t".repeat(128))).is_ok());
        assert!(parse(&format!("h.io/{}", "a".repeat(256))).unwrap_err().contains("longer than 255"));
        // "library/" counts: 248 + 8 > 255.
        assert!(parse(&"a".repeat(248)).is_err());
        assert!(parse(&format!("x@sha256:{d}x")).is_err());
    }
}
