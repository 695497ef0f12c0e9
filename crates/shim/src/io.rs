//! Stdio of one container process: where its output goes (a CRI log, a
//! fifo, a file, nowhere), where its input comes from, and the pty when it
//! has a terminal. Copy threads are counted so that Wait can return only
//! after the last line reached the log.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::fs::{FileTypeExt, OpenOptionsExt},
    },
    path::PathBuf,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use crate::{
    attach::Attachments,
    cri_log::{CriLog, Stream},
    error::{Result, ShimError},
};

/// URI scheme for "write my output as a CRI log file at this path".
pub const CRI_LOG_SCHEME: &str = "cri-log://";

// ATTACH_STDIN: stdin from attach clients, a pipe (or the terminal) the
// shim holds open, fed by whoever attaches.
use berth_oci::attach::ATTACH_STDIN;

#[derive(Debug, Clone, Default)]
pub struct StdioConfig {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    /// Clients may attach (the container's init): output that goes nowhere
    /// still passes through the shim, so attached clients see it.
    pub attachable: bool,
    /// Where a CRI log records the output it had to drop (the container's
    /// `<bundle>/log-drops.json`; none for execs).
    pub log_drops: Option<PathBuf>,
}

/// The three fds handed to the spawned init.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

enum Sink {
    Null,
    Log(CriLog),
    Fd(File),
}

/// Thread stacks of copiers: they only shuffle a 16 KiB heap buffer.
const COPY_STACK: usize = 64 * 1024;

pub struct ProcessIo {
    config: StdioConfig,
    log: Option<CriLog>,
    stdin_pipe: Arc<Mutex<Option<File>>>,
    console: Mutex<Option<File>>,
    running_copiers: Arc<(Mutex<usize>, Condvar)>,
    /// Where tty output goes once the console arrives.
    tty_sink: Mutex<Option<Sink>>,
    /// Clients attached to this process's stdio.
    pub attachments: Arc<Attachments>,
}

impl ProcessIo {
    /// Opens the targets and starts the copiers that need no pty. Returns
    /// the fds for the child.
    pub fn prepare(config: &StdioConfig) -> Result<(ProcessIo, ChildStdio)> {
        let stdout = open_sink(&config.stdout, &config.log_drops)?;
        let stderr = if config.stderr == config.stdout {
            match &stdout {
                Sink::Log(l) => Sink::Log(l.clone()),
                Sink::Null => Sink::Null,
                Sink::Fd(f) => Sink::Fd(f.try_clone().map_err(ShimError::internal("dup stdout"))?),
            }
        } else {
            open_sink(&config.stderr, &config.log_drops)?
        };
        let log = match (&stdout, &stderr) {
            (Sink::Log(l), _) | (_, Sink::Log(l)) => Some(l.clone()),
            _ => None,
        };
        let io = ProcessIo {
            config: config.clone(),
            log,
            stdin_pipe: Arc::new(Mutex::new(None)),
            console: Mutex::new(None),
            running_copiers: Arc::new((Mutex::new(0), Condvar::new())),
            tty_sink: Mutex::new(None),
            attachments: Arc::default(),
        };
        let null = || -> Result<OwnedFd> { Ok(File::open("/dev/null").map_err(ShimError::internal("open /dev/null"))?.into()) };
        if config.terminal {
            // The init replaces 0/1/2 with the pty slave it allocates.
            *io.tty_sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(stdout);
            drop(stderr);
            return Ok((io, ChildStdio { stdin: null()?, stdout: null()?, stderr: null()? }));
        }
        let child_stdin = io.stdin_into_pipe()?.map(Ok).unwrap_or_else(null)?;
        let child_stdout = io.sink_fd(stdout, Stream::Stdout)?;
        let child_stderr = io.sink_fd(stderr, Stream::Stderr)?;
        Ok((io, ChildStdio { stdin: child_stdin, stdout: child_stdout, stderr: child_stderr }))
    }

    /// The fd the child writes to for one stream.
    fn sink_fd(&self, sink: Sink, stream: Stream) -> Result<OwnedFd> {
        Ok(match sink {
            // Not attachable: straight to /dev/null, no thread.
            Sink::Null if !self.config.attachable => OpenOptions::new().write(true).open("/dev/null").map_err(ShimError::internal("open /dev/null"))?.into(),
            // A container with no log (crictl, critest; never the kubelet)
            // can still be attached to: its output goes through a pipe the
            // shim reads and, but for attached clients, discards.
            Sink::Null => {
                let (read, write) = pipe()?;
                let read = Tee { inner: read, stream, attachments: self.attachments.clone() };
                self.spawn_copier("null-copy", move || copy_raw(read, std::io::sink()))?;
                write
            }
            Sink::Fd(f) => f.into(),
            Sink::Log(log) => {
                let (read, write) = pipe()?;
                let read = Tee { inner: read, stream, attachments: self.attachments.clone() };
                self.spawn_copier("log-copy", move || {
                    if let Err(e) = log.copy_from(stream, read) {
                        log::warn!("copy {stream:?} to {}: {e}", log.path().display());
                    }
                })?;
                write
            }
        })
    }

    /// With a stdin path: a pipe whose read end is the child's stdin and a
    /// thread that feeds it from the path. The shim keeps the write end so
    /// CloseIO can end the child's input.
    fn stdin_into_pipe(&self) -> Result<Option<OwnedFd>> {
        if self.config.stdin.is_empty() {
            return Ok(None);
        }
        let (read, write) = pipe()?;
        *self.stdin_pipe.lock().unwrap_or_else(|e| e.into_inner()) = Some(File::from(write));
        if self.config.stdin == ATTACH_STDIN {
            return Ok(Some(read.into()));
        }
        let (path, target) = (PathBuf::from(&self.config.stdin), self.stdin_pipe.clone());
        std::thread::Builder::new()
            .name("stdin".into())
            .stack_size(COPY_STACK)
            .spawn(move || {
                feed_stdin(&path, &target);
                target.lock().unwrap_or_else(|e| e.into_inner()).take();
            })
            .map_err(ShimError::internal("spawn stdin thread"))?;
        Ok(Some(read.into()))
    }

    /// Takes over the pty master the init sent: output to the sink, stdin
    /// into the terminal.
    pub fn attach_console(&self, master: OwnedFd) -> Result<()> {
        let master = File::from(master);
        let reader = master.try_clone().map_err(ShimError::internal("dup pty master"))?;
        let sink = self.tty_sink.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or(Sink::Null);
        let reader = Tee { inner: reader, stream: Stream::Stdout, attachments: self.attachments.clone() };
        self.spawn_copier("tty-copy", move || match sink {
            Sink::Log(log) => {
                if let Err(e) = log.copy_from(Stream::Stdout, reader) {
                    log::warn!("copy tty to {}: {e}", log.path().display());
                }
            }
            Sink::Fd(out) => copy_raw(reader, out),
            Sink::Null => copy_raw(reader, std::io::sink()),
        })?;
        if self.config.stdin == ATTACH_STDIN {
            let writer = master.try_clone().map_err(ShimError::internal("dup pty master"))?;
            *self.stdin_pipe.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer);
        } else if !self.config.stdin.is_empty() {
            let writer = master.try_clone().map_err(ShimError::internal("dup pty master"))?;
            *self.stdin_pipe.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer);
            let (path, target) = (PathBuf::from(&self.config.stdin), self.stdin_pipe.clone());
            std::thread::Builder::new()
                .name("tty-stdin".into())
                .stack_size(COPY_STACK)
                .spawn(move || feed_stdin(&path, &target))
                .map_err(ShimError::internal("spawn stdin thread"))?;
        }
        *self.console.lock().unwrap_or_else(|e| e.into_inner()) = Some(master);
        Ok(())
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let console = self.console.lock().unwrap_or_else(|e| e.into_inner());
        let master = console.as_ref().ok_or_else(|| ShimError::FailedPrecondition("process has no terminal".into()))?;
        let size = libc::winsize { ws_row: height as u16, ws_col: width as u16, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ on a pty master fd we own, with a valid winsize.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
            return Err(ShimError::Internal(format!("resize pty: {}", std::io::Error::last_os_error())));
        }
        Ok(())
    }

    /// Input from an attach client.
    pub fn write_stdin(&self, data: &[u8]) {
        if let Some(target) = self.stdin_pipe.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = target.write_all(data);
        }
    }

    /// Ends the child's input (EOF on a pipe, ^D on a terminal).
    pub fn close_stdin(&self) {
        let mut stdin = self.stdin_pipe.lock().unwrap_or_else(|e| e.into_inner());
        if self.config.terminal {
            if let Some(master) = stdin.as_mut() {
                let _ = master.write_all(&[4]);
            }
        }
        stdin.take();
    }

    pub fn reopen_log(&self) -> Result<()> {
        match &self.log {
            Some(log) => log.reopen().map_err(|e| ShimError::Internal(format!("reopen {}: {e}", log.path().display()))),
            None => Err(ShimError::FailedPrecondition("process output does not go to a CRI log".into())),
        }
    }

    /// Waits until every output copier has seen EOF, so that the log holds
    /// the process's last line. Bounded: a daemonised grandchild may keep
    /// the pipe open forever.
    pub fn wait_drained(&self, timeout: Duration) {
        let (lock, cv) = &*self.running_copiers;
        let deadline = Instant::now() + timeout;
        let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let now = Instant::now();
            if now >= deadline {
                log::warn!("output of the process still open after it exited; not waiting longer");
                return;
            }
            n = cv.wait_timeout(n, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Drops the console and stdin so copy threads end (on Delete).
    pub fn close(&self) {
        self.attachments.stop();
        self.stdin_pipe.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.console.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub fn config(&self) -> &StdioConfig {
        &self.config
    }

    fn spawn_copier(&self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let counter = self.running_copiers.clone();
        let attachments = self.attachments.clone();
        *counter.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let result = std::thread::Builder::new().name(name.into()).stack_size(COPY_STACK).spawn(move || {
            f();
            let (lock, cv) = &*counter;
            let mut left = lock.lock().unwrap_or_else(|e| e.into_inner());
            *left -= 1;
            if *left == 0 {
                // All output is out: attached clients get their EOF.
                attachments.close_all();
            }
            cv.notify_all();
        });
        if let Err(e) = result {
            *self.running_copiers.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            return Err(ShimError::Internal(format!("spawn copy thread: {e}")));
        }
        Ok(())
    }
}

/// Output on its way to the log, copied to attached clients as it passes.
struct Tee<R> {
    inner: R,
    stream: Stream,
    attachments: Arc<Attachments>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.attachments.broadcast(self.stream, &buf[..n]);
        }
        Ok(n)
    }
}

fn open_sink(target: &str, log_drops: &Option<PathBuf>) -> Result<Sink> {
    if target.is_empty() {
        return Ok(Sink::Null);
    }
    if let Some(path) = target.strip_prefix(CRI_LOG_SCHEME) {
        if !path.starts_with('/') {
            return Err(ShimError::InvalidArgument(format!("log path {path:?} is not absolute")));
        }
        return CriLog::open(path.as_ref(), log_drops.clone()).map(Sink::Log).map_err(|e| ShimError::InvalidArgument(format!("open log {path}: {e}")));
    }
    let path = target.strip_prefix("file://").unwrap_or(target);
    if !path.starts_with('/') {
        return Err(ShimError::InvalidArgument(format!("stdio target {target:?} is neither an absolute path nor {CRI_LOG_SCHEME}")));
    }
    let is_fifo = std::fs::metadata(path).map(|m| m.file_type().is_fifo()).unwrap_or(false);
    // A fifo is opened read-write so the open does not block on a reader
    // that has not come yet.
    let file = if is_fifo {
        OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(path)
    } else {
        OpenOptions::new().create(true).append(true).custom_flags(libc::O_CLOEXEC).open(path)
    };
    file.map(Sink::Fd).map_err(|e| ShimError::InvalidArgument(format!("open {path}: {e}")))
}

fn feed_stdin(path: &PathBuf, target: &Arc<Mutex<Option<File>>>) {
    // Opening a fifo for reading blocks until a writer comes: done here, in
    // the thread, never in an RPC.
    let mut source = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("open stdin {}: {e}", path.display());
            return;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut guard = target.lock().unwrap_or_else(|e| e.into_inner());
        let Some(out) = guard.as_mut() else { return };
        if out.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn copy_raw(mut from: impl Read, mut to: impl Write) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

fn pipe() -> Result<(File, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ShimError::Internal(format!("pipe: {e}")))?;
    Ok((File::from(r), w))
}
