//! Layer unpack (`berth_image::unpack::apply_layer`): tar names, links,
//! whiteouts and device entries, from a registry nobody vouches for.
//!
//! Each input is unpacked into `<tmp>/layer`, with `<tmp>/lower` as its
//! parent layer (for hard-link copy-ups) and `<tmp>/canary` beside them,
//! which links in the input aim at. Whatever the input, and whether the
//! unpack succeeds or fails, the lower layer and the canary must be left
//! exactly as they were and nothing may appear beside them.
//!
//! Two targets: `layer_tar_bytes` mutates whole archives (plain and
//! gzip), `layer_tar_entries` builds archives entry by entry from a small
//! vocabulary of hostile names and link targets, which reaches the
//! combinations (a symlink, then a hard link through it) that byte
//! mutations almost never line up.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use arbitrary::{Arbitrary, Unstructured};
use berth_fuzz::{arbitrary, Target};

/// What the canary's files hold: found in the layer, it was read from
/// outside.
const CANARY_SECRET: &str = "canary secret, never to be read into a layer";

/// The directories of one unpack, in a fresh temp dir.
struct Scene {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    layer: PathBuf,
    lower: PathBuf,
    canary: PathBuf,
}

impl Scene {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        let (layer, lower, canary) = (root.join("layer"), root.join("lower"), root.join("canary"));
        for dir in [&layer, &lower.join("dir"), &lower.join("a"), &canary.join("dir")] {
            fs::create_dir_all(dir).expect("create a scene directory");
        }
        fs::write(lower.join("file"), "lower file").unwrap();
        fs::write(lower.join("dir/file"), "lower dir/file").unwrap();
        fs::write(lower.join("a/file"), "lower a/file").unwrap();
        // A name only the lower layer has: a hard link to it is copied up.
        fs::write(lower.join("a/lower-only"), "lower a/lower-only").unwrap();
        // A lower layer may hold a symlink that points out of it (images
        // have absolute symlinks); following it when copying up would read
        // the host.
        std::os::unix::fs::symlink("../canary", lower.join("up")).unwrap();
        fs::write(canary.join("file"), CANARY_SECRET).unwrap();
        fs::write(canary.join("dir/file"), CANARY_SECRET).unwrap();
        Self { _tmp: tmp, root, layer, lower, canary }
    }
}

/// Everything under `dir` that a write through an escape would change:
/// each path's type, mode, owner, size, content and link target.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read a scene directory") {
            let path = entry.expect("dir entry").path();
            let meta = fs::symlink_metadata(&path).expect("stat");
            let detail = if meta.file_type().is_symlink() {
                format!("symlink -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if meta.is_file() {
                format!("file {:?}", fs::read(&path).unwrap())
            } else {
                format!("special {:?}", meta.file_type())
            };
            let key = path.strip_prefix(dir).unwrap().to_path_buf();
            out.insert(key, format!("{detail} mode {:o} owner {}:{}", meta.mode(), meta.uid(), meta.gid()));
        }
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Unpacks `archive` in a fresh scene and checks nothing escaped.
fn unpack_and_check(archive: &[u8]) {
    unpack_in_scene(|_| archive.to_vec());
}

/// Unpacks what `build` makes for a fresh scene (it may aim links at the
/// scene's absolute paths) and checks nothing escaped.
fn unpack_in_scene(build: impl FnOnce(&Scene) -> Vec<u8>) {
    let scene = Scene::new();
    let archive = build(&scene);
    let archive = &archive[..];
    let (lower_before, canary_before) = (tree(&scene.lower), tree(&scene.canary));
    let result = berth_image::unpack::apply_layer(archive, &scene.layer, std::slice::from_ref(&scene.lower));
    if let Err(e) = &result {
        assert!(!e.to_string().is_empty(), "an error says what failed");
    }
    assert_eq!(tree(&scene.canary), canary_before, "the canary beside the layer changed ({result:?})");
    assert_eq!(tree(&scene.lower), lower_before, "the lower layer changed ({result:?})");
    assert_eq!(names(&scene.root), ["canary", "layer", "lower"], "something appeared beside the layer ({result:?})");
    for (path, detail) in tree(&scene.layer) {
        assert!(
            !detail.contains(&format!("{:?}", CANARY_SECRET.as_bytes())),
            "{} holds the canary's content: read from outside the lower layers ({result:?})",
            path.display()
        );
    }
    if let Ok(applied) = result {
        assert!(applied.whiteouts <= applied.entries, "{applied:?}");
    }
}

/// Names that a layer's author controls, hostile ones included.
const NAMES: &[&str] = &[
    "file",
    "dir",
    "dir/file",
    "dir/sub/deep",
    "a",
    "a/file",
    "a/b",
    "up",
    "up/file",
    "up/new",
    "lnk",
    "lnk/file",
    "lnk/new/deeper",
    "h",
    "./dir/./file",
    "/abs",
    "/dir/file",
    "../canary/file",
    "dir/../../canary/file",
    ".wh.file",
    "dir/.wh.file",
    "lnk/.wh.file",
    "up/.wh.file",
    ".wh..wh..opq",
    "dir/.wh..wh..opq",
    "lnk/.wh..wh..opq",
    ".wh..",
    ".wh.",
    "dir/.wh..",
    "",
    ".",
    "/",
    "dev",
    "lnk/dev",
];

/// Link targets: inside, outside (relative and absolute), through links.
const LINK_TARGETS: &[&str] = &[
    "file",
    "dir/file",
    "a/file",
    "a/lower-only",
    "up/file",
    "up/lower-only",
    "lnk/file",
    "lnk/lower-only",
    "dir",
    "../canary",
    "../canary/file",
    "../../..",
    "..",
    "/",
    "/file",
    "/a/file",
    "CANARY",
    "CANARY/file",
    "",
];

#[derive(Debug, Arbitrary)]
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
    /// Any type byte: GNU long names, PAX headers, unknown types.
    Raw(u8),
}

#[derive(Debug, Arbitrary)]
struct Entry {
    name: u8,
    /// Used instead of `name` when set: any bytes at all.
    raw_name: Option<Vec<u8>>,
    kind: Kind,
    link: u8,
    mode: u16,
    uid: u8,
    major: u8,
    minor: u8,
    data: Vec<u8>,
}

/// A tar archive written header by header (`tar::Builder` refuses the
/// very names this target is about). `canary` replaces `CANARY` in link
/// targets: an absolute path to the canary.
fn archive(entries: &[Entry], canary: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let name: Vec<u8> = e.raw_name.clone().unwrap_or_else(|| NAMES[usize::from(e.name) % NAMES.len()].as_bytes().to_vec());
        let link = LINK_TARGETS[usize::from(e.link) % LINK_TARGETS.len()].replace("CANARY", canary);
        let mut header = tar::Header::new_gnu();
        let kind = match e.kind {
            Kind::File => tar::EntryType::Regular,
            Kind::Dir => tar::EntryType::Directory,
            Kind::Symlink => tar::EntryType::Symlink,
            Kind::HardLink => tar::EntryType::Link,
            Kind::Char => tar::EntryType::Char,
            Kind::Block => tar::EntryType::Block,
            Kind::Fifo => tar::EntryType::Fifo,
            Kind::Raw(b) => tar::EntryType::new(b),
        };
        header.set_entry_type(kind);
        let data: &[u8] = if kind == tar::EntryType::Regular { &e.data } else { &[] };
        header.set_size(data.len() as u64);
        header.set_mode(u32::from(e.mode) & 0o7777);
        header.set_uid(u64::from(e.uid));
        header.set_gid(u64::from(e.uid));
        header.set_mtime(1_700_000_000);
        let gnu = header.as_gnu_mut().expect("a GNU header");
        let n = name.len().min(gnu.name.len());
        gnu.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(gnu.linkname.len());
        gnu.linkname[..l].copy_from_slice(&link.as_bytes()[..l]);
        header.set_device_major(u32::from(e.major)).expect("a GNU header has device fields");
        header.set_device_minor(u32::from(e.minor)).expect("a GNU header has device fields");
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn entry(name: &str, kind: Kind, link: &str, data: &[u8]) -> Entry {
    let index = |list: &[&str], s: &str| list.iter().position(|n| *n == s).unwrap_or_else(|| panic!("{s:?} is in the vocabulary")) as u8;
    Entry { name: index(NAMES, name), raw_name: None, kind, link: index(LINK_TARGETS, link), mode: 0o644, uid: 0, major: 1, minor: 3, data: data.to_vec() }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A layer like real ones: directories, files, a symlink, a hard link,
/// devices and both kinds of whiteout.
fn typical_layer() -> Vec<u8> {
    archive(
        &[
            entry("dir", Kind::Dir, "", b""),
            entry("dir/file", Kind::File, "", b"hello\n"),
            entry("file", Kind::File, "", b"x"),
            entry("lnk", Kind::Symlink, "dir", b""),
            entry("h", Kind::HardLink, "dir/file", b""),
            entry("dev", Kind::Char, "", b""),
            entry("a", Kind::Fifo, "", b""),
            entry("dir/.wh.file", Kind::File, "", b""),
            entry("dir/.wh..wh..opq", Kind::File, "", b""),
        ],
        "/nonexistent",
    )
}

#[test]
fn layer_tar_bytes() {
    let typical = typical_layer();
    let escapes = archive(
        &[
            entry("lnk", Kind::Symlink, "../canary", b""),
            entry("lnk/file", Kind::File, "", b"overwritten"),
            entry("h", Kind::HardLink, "../canary/file", b""),
            entry("lnk/.wh.file", Kind::File, "", b""),
        ],
        "/nonexistent",
    );
    // A hard link to a file only the lower layer has is copied up: the
    // copy must neither be read through the lower's symlink `up` (to the
    // canary) nor written through this layer's symlink `a` (to it too).
    let copy_up_reads = archive(&[entry("h", Kind::HardLink, "up/file", b"")], "/nonexistent");
    let copy_up_writes = archive(&[entry("a", Kind::Symlink, "../canary", b""), entry("h", Kind::HardLink, "a/lower-only", b"")], "/nonexistent");
    Target::new("layer_tar_bytes")
        .seed("regress-copy-up-read-through-lower-symlink.tar", copy_up_reads)
        .seed("regress-copy-up-write-through-layer-symlink.tar", copy_up_writes)
        .seed("typical.tar", typical.clone())
        .seed("typical.tar.gz", gzip(&typical))
        .seed("escapes.tar", escapes)
        .run(unpack_and_check);
}

#[test]
fn layer_tar_entries() {
    // Any bytes are a list of entries; these few give the mutations
    // lists of several entries to start from.
    let mut target = Target::new("layer_tar_entries").seed("empty", Vec::new());
    for n in 0..4u64 {
        let mut rng = fastrand::Rng::with_seed(n);
        target = target.seed(&format!("random-{n}"), (0..64 + 64 * n).map(|_| rng.u8(..)).collect::<Vec<u8>>());
    }
    target.run(|input| {
        let Ok(entries) = Unstructured::new(input).arbitrary::<Vec<Entry>>() else { return };
        unpack_in_scene(|scene| archive(&entries, &scene.canary.to_string_lossy()));
    });
}
