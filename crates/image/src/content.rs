//! The content store: blobs addressed by their sha256 digest, verified
//! while they stream in. A partial download stays in `ingest/` so the next
//! attempt resumes it; a blob reaches `blobs/` only complete and verified.

use std::{
    fs::{self, File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    pub fn new(paths: &berth_store::Paths) -> Result<Self> {
        let (blobs, ingest) = (paths.blobs(), paths.ingest());
        for d in [&blobs, &ingest] {
            fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        // An import a crash interrupted cannot resume an unnamed blob.
        for entry in fs::read_dir(&ingest).map_err(Error::io("read", &ingest))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with("unnamed-") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self { blobs, ingest })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs.join(hex_of(digest)?))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    /// How many bytes of `digest` an earlier attempt already downloaded:
    /// the offset to resume from (an HTTP Range request).
    pub fn ingest_offset(&self, digest: &str) -> Result<u64> {
        let path = self.ingest.join(hex_of(digest)?);
        Ok(fs::metadata(path).map(|m| m.len()).unwrap_or(0))
    }

    /// Starts (or resumes) writing `digest`. Feed the bytes after
    /// [`Self::ingest_offset`] to [`Ingest::write`], then [`Ingest::commit`].
    pub fn begin(&self, digest: &str, expected_size: Option<u64>) -> Result<Ingest> {
        let hex = hex_of(digest)?;
        let partial = self.ingest.join(hex);
        let mut hasher = Sha256::new();
        let size = hash_existing(&partial, &mut hasher)?;
        let file = OpenOptions::new().create(true).append(true).open(&partial).map_err(Error::io("open", &partial))?;
        Ok(Ingest { digest: digest.into(), expected_size, partial, target: self.blobs.join(hex), blobs: self.blobs.clone(), file, hasher, size })
    }

    /// Streams `rest` (the bytes after [`Self::ingest_offset`]) in and
    /// commits: [`Self::begin`] + write + commit for a `Read`.
    pub fn ingest(&self, digest: &str, expected_size: Option<u64>, mut rest: impl Read) -> Result<PathBuf> {
        let target = self.blob_path(digest)?;
        if target.exists() {
            return Ok(target);
        }
        let mut ingest = self.begin(digest, expected_size)?;
        // On a read error, what was written stays: the next attempt resumes.
        for_each_chunk(&mut rest, |chunk| ingest.write(chunk))?;
        ingest.commit()
    }

    /// Stores a blob whose digest is not known in advance (a layer of a
    /// `docker save` archive, named by path only): hashed while written to
    /// a private temp file, then committed under the digest it has.
    /// Returns (digest, size). `lease` holds the digest before the blob
    /// shows in the store, so no collection can take it in between.
    pub fn ingest_unnamed(&self, mut data: impl Read, lease: &crate::lease::Lease) -> Result<(String, u64)> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = self.ingest.join(format!("unnamed-{}-{n}", std::process::id()));
        let result = (|| {
            let mut file = File::create(&temp).map_err(Error::io("create", &temp))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            for_each_chunk(&mut data, |chunk| {
                hasher.update(chunk);
                size += chunk.len() as u64;
                file.write_all(chunk).map_err(Error::io("write", &temp))
            })?;
            let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
            file.sync_all().map_err(Error::io("fsync", &temp))?;
            let target = self.blob_path(&digest)?;
            lease.hold(&digest);
            fs::rename(&temp, &target).map_err(Error::io("commit", &target))?;
            File::open(&self.blobs).and_then(|d| d.sync_all()).map_err(Error::io("fsync", &self.blobs))?;
            Ok((digest, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Digests of every stored blob.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.blobs).map_err(Error::io("read", &self.blobs))? {
            let name = e.map_err(Error::io("read", &self.blobs))?.file_name();
            if let Some(hex) = name.to_str().filter(|h| h.len() == 64) {
                out.push(format!("sha256:{hex}"));
            }
        }
        Ok(out)
    }

    /// Removes a blob (and any partial download of it). Missing is fine.
    pub fn delete(&self, digest: &str) -> Result<()> {
        let hex = hex_of(digest)?;
        for p in [self.blobs.join(hex), self.ingest.join(hex)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { op: "remove", path: p, source: e }),
            }
        }
        Ok(())
    }
}

/// A blob being written: hashed as it grows, committed only if complete
/// and correct. Dropped without commit, its bytes stay for a resume.
pub struct Ingest {
    digest: String,
    expected_size: Option<u64>,
    partial: PathBuf,
    target: PathBuf,
    blobs: PathBuf,
    file: File,
    hasher: Sha256,
    size: u64,
}

impl Ingest {
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(want) = self.expected_size.filter(|w| self.size + bytes.len() as u64 > *w) {
            let _ = fs::remove_file(&self.partial);
            return Err(Error::SizeMismatch { expected: self.digest.clone(), expected_size: want, actual_size: self.size + bytes.len() as u64 });
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes).map_err(Error::io("write", &self.partial))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Verifies size and digest; on success the blob is in the store.
    pub fn commit(self) -> Result<PathBuf> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        if let Some(want) = self.expected_size.filter(|w| *w != self.size) {
            let _ = fs::remove_file(&self.partial);
            return Err(Error::SizeMismatch { expected: self.digest, expected_size: want, actual_size: self.size });
        }
        if actual != self.digest {
            let _ = fs::remove_file(&self.partial);
            return Err(Error::DigestMismatch { expected: self.digest, actual });
        }
        self.file.sync_all().map_err(Error::io("fsync", &self.partial))?;
        fs::rename(&self.partial, &self.target).map_err(Error::io("commit", &self.target))?;
        File::open(&self.blobs).and_then(|d| d.sync_all()).map_err(Error::io("fsync", &self.blobs))?;
        Ok(self.target)
    }
}

/// Reads `data` to its end in 256 KiB chunks, handing each to `f`.
fn for_each_chunk(data: &mut impl Read, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match data.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => f(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Read(e)),
        }
    }
}

fn hash_existing(partial: &Path, hasher: &mut Sha256) -> Result<u64> {
    let mut f = match File::open(partial) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::Io { op: "open", path: partial.into(), source: e }),
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf).map_err(Error::io("read", partial))?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// `sha256:<64 lowercase hex>` to its hex part; anything else is refused,
/// since the hex becomes a file name.
fn hex_of(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| Error::InvalidDigest(digest.into()))?;
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(hex)
    } else {
        Err(Error::InvalidDigest(digest.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(b: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(b)))
    }

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::new(&berth_store::Paths::new(dir.path().join("root"), dir.path().join("state"))).unwrap();
        (dir, s)
    }

    /// A reader that fails after `n` bytes, like a dropped connection.
    struct Flaky<'a>(&'a [u8], usize);
    impl Read for Flaky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1 == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
            }
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            self.1 -= n;
            Ok(n)
        }
    }

    #[test]
    fn verified_blobs_land_and_bad_ones_do_not() {
        let (_d, s) = store();
        let data = b"layer bytes";
        let d = digest_of(data);
        s.ingest(&d, Some(data.len() as u64), &data[..]).unwrap();
        assert!(s.has(&d));
        let wrong = digest_of(b"something else");
        let e = s.ingest(&wrong, None, &data[..]).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert!(!s.has(&wrong) && s.ingest_offset(&wrong).unwrap() == 0, "nothing kept of a bad blob");
        let e = s.ingest(&digest_of(b"abc"), Some(99), &b"abc"[..]).unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { actual_size: 3, .. }), "{e}");
        let e = s.ingest(&digest_of(b"abc"), Some(2), &b"abc"[..]).unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { expected_size: 2, .. }), "a blob longer than announced stops early: {e}");
    }

    #[test]
    fn an_interrupted_download_resumes() {
        let (_d, s) = store();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let d = digest_of(&data);
        assert!(s.ingest(&d, Some(data.len() as u64), Flaky(&data, 300_000)).is_err());
        let offset = s.ingest_offset(&d).unwrap();
        assert_eq!(offset, 300_000);
        s.ingest(&d, Some(data.len() as u64), &data[offset as usize..]).unwrap();
        assert_eq!(fs::read(s.blob_path(&d).unwrap()).unwrap(), data);
        assert_eq!(s.ingest_offset(&d).unwrap(), 0);
    }

    #[test]
    fn digests_that_are_not_sha256_hex_are_refused() {
        let (_d, s) = store();
        for bad in ["md5:abc", "sha256:../../etc/passwd", "sha256:ABC", &format!("sha256:{}", "g".repeat(64))] {
            assert!(matches!(s.blob_path(bad), Err(Error::InvalidDigest(_))), "{bad}");
        }
        s.delete(&digest_of(b"never stored")).unwrap();
    }
}
