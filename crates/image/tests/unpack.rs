//! Layers unpack into overlay form, and stack into the right view.

use std::{
    fs,
    io::Write,
    os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt},
    path::Path,
};

use berth_image::{unpack::apply_layer, Error};
use tar::{Builder, EntryType, Header};

fn header(path: &str, kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn file(b: &mut Builder<Vec<u8>>, path: &str, body: &[u8]) {
    let mut h = header(path, EntryType::Regular, 0o644, body.len() as u64);
    h.set_cksum();
    b.append(&h, body).unwrap();
}

fn dir(b: &mut Builder<Vec<u8>>, path: &str, mode: u32, uid: u64) {
    let mut h = header(path, EntryType::Directory, mode, 0);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
}

fn link(b: &mut Builder<Vec<u8>>, kind: EntryType, path: &str, target: &str) {
    let mut h = header(path, kind, 0o777, 0);
    h.set_link_name(target).unwrap();
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
}

fn node(b: &mut Builder<Vec<u8>>, kind: EntryType, path: &str, major: u32, minor: u32) {
    let mut h = header(path, kind, 0o600, 0);
    h.set_device_major(major).unwrap();
    h.set_device_minor(minor).unwrap();
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
}

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "layer unpack keeps owners and device nodes: run as root (README)");
}

#[test]
fn a_layer_keeps_owners_modes_links_and_nodes() {
    require_root();
    let mut b = Builder::new(Vec::new());
    dir(&mut b, "app/", 0o750, 1000);
    file(&mut b, "app/run.sh", b"#!/bin/sh\n");
    link(&mut b, EntryType::Symlink, "app/latest", "run.sh");
    link(&mut b, EntryType::Link, "app/hard", "app/run.sh");
    node(&mut b, EntryType::Char, "dev/null", 1, 3);
    node(&mut b, EntryType::Fifo, "app/pipe", 0, 0);
    let layer = b.into_inner().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let applied = apply_layer(&layer[..], dest.path(), &[]).unwrap();
    assert_eq!(applied.entries, 6);
    let app = fs::metadata(dest.path().join("app")).unwrap();
    assert_eq!((app.uid(), app.gid(), app.permissions().mode() & 0o7777), (1000, 1000, 0o750));
    assert_eq!(fs::read_link(dest.path().join("app/latest")).unwrap(), Path::new("run.sh"));
    assert_eq!(fs::metadata(dest.path().join("app/hard")).unwrap().ino(), fs::metadata(dest.path().join("app/run.sh")).unwrap().ino());
    let null = fs::metadata(dest.path().join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.permissions().mode() & 0o7777, 0o600);
    assert!(fs::metadata(dest.path().join("app/pipe")).unwrap().file_type().is_fifo());
    assert_eq!(fs::metadata(dest.path().join("app/run.sh")).unwrap().mtime(), 1_700_000_000);
}

#[test]
fn whiteouts_become_overlay_whiteouts_and_the_merged_view_is_right() {
    require_root();
    let base = tempfile::tempdir().unwrap();
    let mut b = Builder::new(Vec::new());
    file(&mut b, "etc/keep", b"keep");
    file(&mut b, "etc/gone", b"gone");
    file(&mut b, "data/old1", b"1");
    file(&mut b, "data/old2", b"2");
    apply_layer(&b.into_inner().unwrap()[..], base.path(), &[]).unwrap();

    let upper = tempfile::tempdir().unwrap();
    let mut b = Builder::new(Vec::new());
    file(&mut b, "etc/.wh.gone", b"");
    dir(&mut b, "data/", 0o755, 0);
    file(&mut b, "data/.wh..wh..opq", b"");
    file(&mut b, "data/new", b"new");
    // Gzip, to exercise detection.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    let applied = apply_layer(&gz.finish().unwrap()[..], upper.path(), &[base.path().to_path_buf()]).unwrap();
    assert_eq!(applied.whiteouts, 2);
    let wh = fs::metadata(upper.path().join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);

    // Mount lower+upper as overlay: the view a container gets.
    let view = tempfile::tempdir().unwrap();
    let opts = format!("lowerdir={}:{}", upper.path().display(), base.path().display());
    nix::mount::mount(Some("overlay"), view.path(), Some("overlay"), nix::mount::MsFlags::MS_RDONLY, Some(opts.as_str())).unwrap();
    let listing = |p: &str| {
        let mut v: Vec<String> = fs::read_dir(view.path().join(p)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    let (etc, data) = (listing("etc"), listing("data"));
    nix::mount::umount(view.path()).unwrap();
    assert_eq!(etc, ["keep"], "deleted file is hidden");
    assert_eq!(data, ["new"], "opaque directory hides the lower contents");
}

#[test]
fn entries_that_escape_are_rejected_and_write_nothing_outside() {
    require_root();
    let outside = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();

    let mut b = Builder::new(Vec::new());
    // tar::Header refuses '..' in set_path; write the name bytes directly.
    let mut h = header("placeholder", EntryType::Regular, 0o644, 4);
    h.as_gnu_mut().unwrap().name[..11].copy_from_slice(b"../evil.txt");
    h.as_gnu_mut().unwrap().name[11] = 0;
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let err = apply_layer(&b.into_inner().unwrap()[..], dest.path(), &[]).unwrap_err();
    assert!(matches!(err, Error::Escape { .. }), "{err}");

    let mut b = Builder::new(Vec::new());
    link(&mut b, EntryType::Symlink, "sneaky", outside.path().to_str().unwrap());
    file(&mut b, "sneaky/owned.txt", b"owned");
    let err = apply_layer(&b.into_inner().unwrap()[..], dest.path(), &[]).unwrap_err();
    assert!(matches!(err, Error::Escape { .. }), "{err}");
    assert!(!outside.path().join("owned.txt").exists());

    let mut b = Builder::new(Vec::new());
    link(&mut b, EntryType::Symlink, "sneaky2", outside.path().to_str().unwrap());
    file(&mut b, "sneaky2/.wh.victim", b"");
    fs::write(outside.path().join("victim"), "precious").unwrap();
    assert!(apply_layer(&b.into_inner().unwrap()[..], dest.path(), &[]).is_err());
    assert_eq!(fs::read_to_string(outside.path().join("victim")).unwrap(), "precious");
}

#[test]
fn zstd_layers_and_hard_links_into_a_lower_layer() {
    require_root();
    let lower = tempfile::tempdir().unwrap();
    fs::create_dir_all(lower.path().join("bin")).unwrap();
    fs::write(lower.path().join("bin/tool"), "tool").unwrap();
    let mut b = Builder::new(Vec::new());
    link(&mut b, EntryType::Link, "bin/tool-alias", "bin/tool");
    let zst = zstd::encode_all(&b.into_inner().unwrap()[..], 1).unwrap();
    let upper = tempfile::tempdir().unwrap();
    apply_layer(&zst[..], upper.path(), &[lower.path().to_path_buf()]).unwrap();
    assert_eq!(fs::read_to_string(upper.path().join("bin/tool-alias")).unwrap(), "tool");
    assert_eq!(
        fs::metadata(upper.path().join("bin/tool-alias")).unwrap().ino(),
        fs::metadata(upper.path().join("bin/tool")).unwrap().ino(),
        "the target was copied up and linked"
    );
}
