//! The image half of the Docker workflow against a real berthd and local
//! registries: login, push, pull with stored credentials, logout, tag,
//! save and import, history; and the bad input each refuses.

mod common;

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
};

use base64::Engine;
use common::Daemon;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";

/// berthctl with `DOCKER_CONFIG` set (never the host's `~/.docker`) and
/// `input` on stdin; its exit code and output.
fn ctl(socket: &Path, docker_config: &Path, args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berthctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn stored_auths(docker_config: &Path) -> serde_json::Value {
    let file = docker_config.join("config.json");
    serde_json::from_slice::<serde_json::Value>(&std::fs::read(file).unwrap()).unwrap()["auths"].clone()
}

fn image_ids(socket: &Path, docker_config: &Path) -> String {
    let (code, out, err) = ctl(socket, docker_config, &["images", "ls"], b"");
    assert_eq!(code, 0, "{err}");
    out
}

/// Login (a wrong password is refused and stores nothing), then push to a
/// registry that wants Basic auth, remove, and pull again with no
/// credentials given: berthd finds them in its auth file. After logout
/// the same pull is refused, and pushes without (or with wrong)
/// credentials fail with status 1 saying so.
#[test]
fn push_rmi_pull_round_trips_through_a_registry_with_auth() {
    let registry = berth_testkit::Registry::start_with_auth(Some((USER, PASSWORD)));
    let work = tempfile::tempdir().unwrap();
    let host = registry.host();
    berth_testkit::build_and_push_as(&registry, work.path(), "src/app:1", None, Some(&format!("{USER}:{PASSWORD}")));
    // berthctl's config (login writes it) is the file berthd reads.
    let docker = work.path().join("docker");
    let auth_file = docker.join("config.json");
    let daemon = Daemon::start_with(&host, "", &format!("auth_file = \"{}\"", auth_file.display()));
    let socket = daemon.socket.clone();
    // berthctl with a config of its own that holds nothing: whatever
    // credentials a pull uses then are berthd's.
    let empty = work.path().join("empty");

    let src = format!("{host}/src/app:1");
    let (code, _, err) = ctl(&socket, &empty, &["pull", &src], b"");
    assert_eq!(code, 1, "no credentials anywhere yet: {err}");
    assert!(err.contains("Unauthenticated"), "{err}");

    let (code, _, err) = ctl(&socket, &docker, &["login", "-u", USER, "--password-stdin", &host], b"wrong\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("login") && err.contains("Unauthenticated"), "{err}");
    assert!(!auth_file.exists(), "refused credentials are not stored");
    let (code, out, err) = ctl(&socket, &docker, &["login", "-u", USER, "--password-stdin", &host], format!("{PASSWORD}\n").as_bytes());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Login Succeeded"), "{out}");
    assert_eq!(std::fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777, 0o600);
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert_eq!(stored_auths(&docker)[&host]["auth"], expected.as_str(), "{}", std::fs::read_to_string(&auth_file).unwrap());

    // The stored credentials, read by berthd at this pull (no restart).
    let (code, out, err) = ctl(&socket, &empty, &["pull", &src], b"");
    assert_eq!(code, 0, "{err}");
    let id = out.lines().last().unwrap().to_string();
    assert!(id.starts_with("sha256:"), "{out}");

    let pushed = format!("{host}/pushed/app:2");
    let (code, _, err) = ctl(&socket, &docker, &["tag", &src, &pushed], b"");
    assert_eq!(code, 0, "{err}");
    // Not a terminal: one line per layer, then the reference and digest.
    let (code, out, err) = ctl(&socket, &docker, &["push", &pushed], b"");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[..2].iter().all(|l| l.contains(": pushed ") && l.ends_with(" MB")), "{out}");
    assert!(lines[2].starts_with(&format!("{pushed}: digest: sha256:")), "{out}");
    // The registry has it, under the tag, by the digest announced.
    let digest = lines[2].split(' ').nth(2).unwrap();
    let check = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds", &format!("{USER}:{PASSWORD}"), &format!("docker://{pushed}")])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest, "{inspected}");
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2, "{inspected}");
    // Again: every blob is there already.
    let (code, out, err) = ctl(&socket, &docker, &["push", &pushed], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().filter(|l| l.ends_with(": already exists")).count(), 2, "{out}");

    let (code, _, err) = ctl(&socket, &docker, &["rmi", &pushed], b"");
    assert_eq!(code, 0, "{err}");
    assert!(!image_ids(&socket, &docker).contains(&host), "the image is gone");
    let (code, out, err) = ctl(&socket, &empty, &["pull", &pushed], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().last(), Some(id.as_str()), "the same image came back: {out}");
    assert!(out.lines().filter(|l| l.contains(": pulled ")).count() == 2, "downloaded again: {out}");

    // Pushes without credentials, and with wrong ones (berthctl's own
    // config), fail naming the cause. berthd's file still has the good
    // ones, so the wrong ones must be what was sent.
    let wrong = work.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    let bad = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:nope"));
    std::fs::write(wrong.join("config.json"), format!(r#"{{"auths": {{"{host}": {{"auth": "{bad}"}}}}}}"#)).unwrap();
    let (code, _, err) = ctl(&socket, &wrong, &["push", &pushed], b"");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Unauthenticated") && err.contains("401") && err.contains(&format!("berthctl login {host}")), "{err}");

    // Logout removes the entry (and keeps the file's other keys).
    let (code, out, err) = ctl(&socket, &docker, &["logout", &host], b"");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Removing login credentials"), "{out}");
    assert!(stored_auths(&docker).get(&host).is_none(), "{}", std::fs::read_to_string(&auth_file).unwrap());
    let (code, out, _) = ctl(&socket, &docker, &["logout", &host], b"");
    assert_eq!(code, 0);
    assert!(out.contains("Not logged in"), "{out}");
    let (code, _, err) = ctl(&socket, &empty, &["push", &pushed], b"");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Unauthenticated"), "{err}");
    let (code, _, err) = ctl(&socket, &docker, &["rmi", &pushed], b"");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctl(&socket, &empty, &["pull", &pushed], b"");
    assert_eq!(code, 1, "after logout berthd has no credentials: {err}");
    assert!(err.contains("Unauthenticated"), "{err}");
}

/// A registry with token auth: login, push (a token for pull and push),
/// pull back after removal.
#[test]
fn push_and_pull_through_a_token_registry() {
    let registry = berth_testkit::Registry::start_with(berth_testkit::RegistryOptions { token_credentials: Some((USER, PASSWORD)), ..Default::default() });
    let work = tempfile::tempdir().unwrap();
    let host = registry.host();
    berth_testkit::build_and_push_as(&registry, work.path(), "src/app:1", None, Some(&format!("{USER}:{PASSWORD}")));
    let docker = work.path().join("docker");
    let daemon = Daemon::start_with(&host, "", &format!("auth_file = \"{}\"", docker.join("config.json").display()));
    let socket = daemon.socket.clone();
    let (code, _, err) = ctl(&socket, &docker, &["login", "-u", USER, "-p", "wrong", &host], b"");
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = ctl(&socket, &docker, &["login", "-u", USER, "-p", PASSWORD, &host], b"");
    assert_eq!(code, 0, "{err}");
    let src = format!("{host}/src/app:1");
    let (code, out, err) = ctl(&socket, &docker, &["pull", &src], b"");
    assert_eq!(code, 0, "{err}");
    let id = out.lines().last().unwrap().to_string();
    let pushed = format!("{host}/other/app:3");
    assert_eq!(ctl(&socket, &docker, &["tag", &id, &pushed], b"").0, 0);
    // On a terminal (script(1) gives it one) the layer lines are redrawn
    // in place as the upload goes.
    let command = format!("{} --socket {} push {pushed}", env!("CARGO_BIN_EXE_berthctl"), socket.display());
    let out = Command::new("script").args(["-qec", &command, "/dev/null"]).env("DOCKER_CONFIG", &docker).stdin(Stdio::null()).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    // indicatif's bars: a line cleared, the cursor moved up over the bars.
    let moved_up = shown
        .split("\x1b[")
        .skip(1)
        .any(|rest| rest.trim_start_matches(|c: char| c.is_ascii_digit()).starts_with('A') && rest.starts_with(|c: char| c.is_ascii_digit()));
    assert!(shown.contains("\x1b[2K") && moved_up, "redrawn: {shown:?}");
    assert!(shown.matches(": pushed ").count() >= 2 && shown.contains(&format!("{pushed}: digest: ")), "{shown:?}");
    // Not a terminal: plain lines only.
    let (code, out, err) = ctl(&socket, &docker, &["push", &pushed], b"");
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\x1b') && out.lines().last().unwrap().starts_with(&format!("{pushed}: digest: ")), "{out:?}");
    assert_eq!(ctl(&socket, &docker, &["rmi", &id], b"").0, 0);
    let (code, out, err) = ctl(&socket, &docker, &["pull", &pushed], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().last(), Some(id.as_str()));
}

/// `save` in both formats, then `images import` of each after the image
/// is gone: the same image id and name. Also `tag` and `history`, and
/// the bad input of each verb.
#[test]
fn save_import_tag_and_history() {
    let registry = berth_testkit::Registry::start();
    let work = tempfile::tempdir().unwrap();
    let host = registry.host();
    berth_testkit::build_and_push(&registry, work.path(), "ops/tool:2", None);
    let docker = work.path().join("docker");
    let daemon = Daemon::start(&host, "");
    let socket = daemon.socket.clone();
    let name = format!("{host}/ops/tool:2");
    let (code, out, err) = ctl(&socket, &docker, &["pull", &name], b"");
    assert_eq!(code, 0, "{err}");
    let id = out.lines().last().unwrap().to_string();
    let short = &id[7..19];

    // tag: one more name, shown by `images`; the old one stays.
    let (code, _, err) = ctl(&socket, &docker, &["tag", &name, "example.com/team/tool"], b"");
    assert_eq!(code, 0, "{err}");
    let listed = image_ids(&socket, &docker);
    assert!(listed.lines().any(|l| l.starts_with("example.com/team/tool:latest") && l.contains(short)), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with(&name)), "{listed}");
    let (code, _, err) = ctl(&socket, &docker, &["tag", "example.com/no/such:1", "example.com/x:1"], b"");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("NotFound") && err.contains("example.com/no/such:1"), "{err}");

    // history: newest first, one entry per layer at least, the id on top.
    let (code, out, err) = ctl(&socket, &docker, &["history", &name], b"");
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert!(out.starts_with("IMAGE") && rows[0].starts_with(short), "{out}");
    // umoci's steps: two repacks (the layers, with their sizes), a config.
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[0].contains("umoci config") && rows[0].trim_end().ends_with(" 0 B"), "{out}");
    for layer in &rows[1..] {
        assert!(layer.starts_with("<missing>") && layer.contains("umoci repack") && !layer.trim_end().ends_with(" 0 B"), "{out}");
    }
    assert!(rows[2].contains(" MB"), "busybox's layer: {out}");
    let (code, _, err) = ctl(&socket, &docker, &["history", "example.com/no/such:1"], b"");
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = ctl(&socket, &docker, &["push", "example.com/no/such:1"], b"");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("NotFound") && err.contains("example.com/no/such:1"), "{err}");

    // save, remove, import: the same id, the same names.
    for format in ["oci", "docker"] {
        let archive = work.path().join(format!("tool-{format}.tar"));
        let (code, out, err) = ctl(&socket, &docker, &["save", "--format", format, "-o", archive.to_str().unwrap(), &name], b"");
        assert_eq!(code, 0, "{err}");
        assert!(out.is_empty() && archive.metadata().unwrap().len() > 0, "{out}");
        let (code, _, err) = ctl(&socket, &docker, &["rmi", &id], b"");
        assert_eq!(code, 0, "{err}");
        assert!(!image_ids(&socket, &docker).contains(short));
        let (code, out, err) = ctl(&socket, &docker, &["images", "import", archive.to_str().unwrap()], b"");
        assert_eq!(code, 0, "{format}: {err}");
        assert_eq!(out.trim(), format!("{id} {name}"), "{format}");
        // The imported image runs like the pulled one did (layers unpacked).
        let (code, out, err) = ctl(&socket, &docker, &["history", &name], b"");
        assert_eq!(code, 0, "{err}");
        assert!(out.lines().nth(1).unwrap().starts_with(short), "{out}");
    }
    // By id, to stdout: every name the image has (here the tag is back too).
    ctl(&socket, &docker, &["tag", &name, "example.com/team/tool"], b"");
    let out = Command::new(env!("CARGO_BIN_EXE_berthctl")).arg("--socket").arg(&socket).args(["save", &id]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut index = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("index.json") {
            index = Some(serde_json::from_reader::<_, serde_json::Value>(&mut entry).unwrap());
        }
    }
    let names: Vec<String> =
        index.unwrap()["manifests"].as_array().unwrap().iter().map(|m| m["annotations"]["io.containerd.image.name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, [name.clone(), "example.com/team/tool:latest".to_string()]);
    let (code, _, err) = ctl(&socket, &docker, &["save", "-o", work.path().join("x.tar").to_str().unwrap(), "example.com/no/such:1"], b"");
    assert_eq!(code, 1, "{err}");
    assert!(!work.path().join("x.tar").exists(), "a failed save leaves no file");
}

/// Malformed references and hosts are usage errors (status 2) naming the
/// argument, before berthd is asked anything.
#[test]
fn malformed_names_are_usage_errors() {
    let work = tempfile::tempdir().unwrap();
    // No berthd at all: a usage error comes first.
    let socket = work.path().join("none.sock");
    let docker = work.path().join("docker");
    for (args, argument) in [
        (&["push", "Bad Ref"][..], "<IMAGE>"),
        (&["push", "r.io/a@sha256:0000000000000000000000000000000000000000000000000000000000000000"][..], "<IMAGE>"),
        (&["tag", "UPPER/Case", "r.io/a:1"][..], "<SOURCE>"),
        (&["tag", "r.io/a:1", "bad::tag"][..], "<TARGET>"),
        (&["save", "-o", "/dev/null", "no spaces"][..], "<IMAGES>"),
        (&["history", "a b"][..], "<IMAGE>"),
        (&["login", "-u", "u", "-p", "p", "bad host!"][..], "<REGISTRY>"),
        (&["logout", "not/a/host"][..], "<REGISTRY>"),
        (&["save", "--format", "zip", "r.io/a:1"][..], "--format"),
    ] {
        let (code, _, err) = ctl(&socket, &docker, args, b"");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(argument) && err.lines().count() <= 4, "{args:?}: {err}");
    }
    let (code, _, err) = ctl(&socket, &docker, &["login", "-u", "u", "r.io:5000"], b"");
    assert_eq!(code, 2, "no password source: {err}");
    assert!(!docker.exists(), "nothing written");
}
