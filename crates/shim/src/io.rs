//! Stdio of one container process: where its output goes (a CRI log, a
//! fifo, a file, nowhere), where its input comes from, and the pty when it
//! has a terminal. The copies are tasks on the shim's event loop, counted
//! so that Wait can return only after the last line reached the log.

use std::{
    fs::{File, OpenOptions},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::fs::{FileTypeExt, OpenOptionsExt},
    },
    path::PathBuf,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use crate::{
    attach::Attachments,
    cri_log::{CriLog, Stream},
    error::{Result, ShimError},
    fdio::Fd,
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

/// Buffer of a copy that does not go to a CRI log (which has its own).
const COPY_BUFFER: usize = 16 * 1024;

/// The child's input as the shim holds it: the write end of its stdin
/// pipe, or the pty master.
#[derive(Default)]
struct Stdin {
    target: Mutex<Option<Arc<Fd>>>,
    /// One writer at a time, so two clients' input never interleaves
    /// within a write.
    turn: tokio::sync::Mutex<()>,
}

impl Stdin {
    fn set(&self, fd: Fd) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(fd));
    }

    fn current(&self) -> Option<Arc<Fd>> {
        self.target.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes `data` in full; false once there is no input to write to.
    async fn write(&self, data: &[u8]) -> bool {
        let _turn = self.turn.lock().await;
        match self.current() {
            Some(target) => target.write_all(data).await.is_ok(),
            None => false,
        }
    }

    /// Drops the shim's end (a write in progress keeps it until it ends).
    fn take(&self) -> Option<Arc<Fd>> {
        self.target.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Output copies still running; Wait and Delete wait for none.
#[derive(Default)]
struct Copiers {
    running: Mutex<usize>,
    /// For waits on the blocking pool (Delete's teardown).
    cv: Condvar,
    /// For waits on the event loop (Wait).
    notify: Notify,
}

pub struct ProcessIo {
    config: StdioConfig,
    log: Option<CriLog>,
    stdin: Arc<Stdin>,
    /// The pty master, for resizes.
    console: Mutex<Option<OwnedFd>>,
    copiers: Arc<Copiers>,
    /// Where tty output goes once the console arrives.
    tty_sink: Mutex<Option<Sink>>,
    /// Clients attached to this process's stdio.
    pub attachments: Arc<Attachments>,
}

impl ProcessIo {
    /// Opens the targets and starts the copies that need no pty. Returns
    /// the fds for the child. Runs within the shim's runtime (the copies
    /// are its tasks).
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
            stdin: Arc::default(),
            console: Mutex::new(None),
            copiers: Arc::default(),
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
            // Not attachable: straight to /dev/null, no copy.
            Sink::Null if !self.config.attachable => OpenOptions::new().write(true).open("/dev/null").map_err(ShimError::internal("open /dev/null"))?.into(),
            // A container with no log (crictl, critest; never the kubelet)
            // can still be attached to: its output goes through a pipe the
            // shim reads and, but for attached clients, discards.
            Sink::Null => {
                let (read, write) = pipe()?;
                let (read, attachments) = (Fd::reader(read).map_err(ShimError::internal("poll pipe"))?, self.attachments.clone());
                self.spawn_copier(async move { copy_raw(read, stream, &attachments, None).await });
                write
            }
            Sink::Fd(f) => f.into(),
            Sink::Log(log) => {
                let (read, write) = pipe()?;
                let (read, attachments) = (Fd::reader(read).map_err(ShimError::internal("poll pipe"))?, self.attachments.clone());
                self.spawn_copier(async move { copy_to_log(read, stream, &attachments, log).await });
                write
            }
        })
    }

    /// With a stdin path: a pipe whose read end is the child's stdin and a
    /// task that feeds it from the path. The shim keeps the write end so
    /// CloseIO can end the child's input.
    fn stdin_into_pipe(&self) -> Result<Option<OwnedFd>> {
        if self.config.stdin.is_empty() {
            return Ok(None);
        }
        let (read, write) = pipe()?;
        self.stdin.set(Fd::writer(write).map_err(ShimError::internal("poll stdin pipe"))?);
        if self.config.stdin != ATTACH_STDIN {
            let (path, stdin) = (PathBuf::from(&self.config.stdin), self.stdin.clone());
            tokio::spawn(async move {
                feed_stdin(&path, &stdin).await;
                // The source ended: so does the child's input.
                stdin.take();
            });
        }
        Ok(Some(read))
    }

    /// Takes over the pty master the init sent: output to the sink, stdin
    /// into the terminal.
    pub fn attach_console(&self, master: OwnedFd) -> Result<()> {
        let dup = || master.try_clone().map_err(ShimError::internal("dup pty master"));
        let reader = Fd::reader(dup()?).map_err(ShimError::internal("poll pty master"))?;
        let sink = self.tty_sink.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or(Sink::Null);
        let attachments = self.attachments.clone();
        match sink {
            Sink::Log(log) => self.spawn_copier(async move { copy_to_log(reader, Stream::Stdout, &attachments, log).await }),
            Sink::Fd(out) => {
                let out = Fd::writer(out.into()).map_err(ShimError::internal("poll stdout"))?;
                self.spawn_copier(async move { copy_raw(reader, Stream::Stdout, &attachments, Some(out)).await })
            }
            Sink::Null => self.spawn_copier(async move { copy_raw(reader, Stream::Stdout, &attachments, None).await }),
        }
        if !self.config.stdin.is_empty() {
            self.stdin.set(Fd::writer(dup()?).map_err(ShimError::internal("poll pty master"))?);
        }
        if !self.config.stdin.is_empty() && self.config.stdin != ATTACH_STDIN {
            let (path, stdin) = (PathBuf::from(&self.config.stdin), self.stdin.clone());
            tokio::spawn(async move { feed_stdin(&path, &stdin).await });
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
    pub async fn write_stdin(&self, data: &[u8]) {
        self.stdin.write(data).await;
    }

    /// Ends the child's input (EOF on a pipe, ^D on a terminal).
    pub fn close_stdin(&self) {
        if let Some(target) = self.stdin.take() {
            if self.config.terminal {
                let _ = target.try_write(&[4]);
            }
        }
    }

    pub fn reopen_log(&self) -> Result<()> {
        match &self.log {
            Some(log) => log.reopen().map_err(|e| ShimError::Internal(format!("reopen {}: {e}", log.path().display()))),
            None => Err(ShimError::FailedPrecondition("process output does not go to a CRI log".into())),
        }
    }

    /// Blocks until every output copy has seen EOF, so that the log holds
    /// the process's last line. Bounded: a daemonised grandchild may keep
    /// the pipe open forever. Not on the event loop (the copies run there).
    pub fn wait_drained(&self, timeout: Duration) {
        let Copiers { running, cv, .. } = &*self.copiers;
        let deadline = Instant::now() + timeout;
        let mut n = running.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let now = Instant::now();
            if now >= deadline {
                log::warn!("output of the process still open after it exited; not waiting longer");
                return;
            }
            n = cv.wait_timeout(n, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// [`Self::wait_drained`] for the event loop.
    pub async fn drained(&self, timeout: Duration) {
        let copiers = &*self.copiers;
        let all_done = async {
            loop {
                let notified = copiers.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if *copiers.running.lock().unwrap_or_else(|e| e.into_inner()) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(timeout, all_done).await.is_err() {
            log::warn!("output of the process still open after it exited; not waiting longer");
        }
    }

    /// Drops the console and stdin so the copies end (on Delete).
    pub fn close(&self) {
        self.attachments.stop();
        self.stdin.take();
        self.console.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub fn config(&self) -> &StdioConfig {
        &self.config
    }

    fn spawn_copier(&self, copy: impl std::future::Future<Output = ()> + Send + 'static) {
        let copiers = self.copiers.clone();
        let attachments = self.attachments.clone();
        *copiers.running.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        tokio::spawn(async move {
            copy.await;
            let mut left = copiers.running.lock().unwrap_or_else(|e| e.into_inner());
            *left -= 1;
            if *left == 0 {
                // All output is out: attached clients get their EOF.
                attachments.close_all();
            }
            drop(left);
            copiers.cv.notify_all();
            copiers.notify.notify_waiters();
        });
    }
}

/// Copies one stream into the log until EOF, passing it to attached
/// clients on the way.
async fn copy_to_log(source: Fd, stream: Stream, attachments: &Attachments, log: CriLog) {
    let mut records = log.records(stream);
    loop {
        match source.read(records.space()).await {
            Ok(0) => break,
            Ok(n) => {
                attachments.broadcast(stream, &records.space()[..n]);
                records.filled(n);
            }
            // A pty master reports EIO once the last slave fd closes.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                log::warn!("copy {stream:?} to {}: {e}", log.path().display());
                break;
            }
        }
    }
    records.finish();
}

/// Copies one stream to `to` (or nowhere) until EOF, passing it to
/// attached clients on the way.
async fn copy_raw(source: Fd, stream: Stream, attachments: &Attachments, to: Option<Fd>) {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match source.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        attachments.broadcast(stream, &buf[..n]);
        if let Some(to) = &to {
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
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
    if is_fifo {
        return open_fifo_writer(path).map(Sink::Fd);
    }
    let file = OpenOptions::new().create(true).append(true).custom_flags(libc::O_CLOEXEC).open(path);
    file.map(Sink::Fd).map_err(|e| ShimError::InvalidArgument(format!("open {path}: {e}")))
}

/// How long an output fifo may wait for its reader (containerd opens it
/// before it asks for the process, so it is there at once).
const FIFO_READER_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens an output fifo for writing only, once its reader is there, as
/// containerd's own shims do. Opened read-write (as it was), a process that
/// wrote and exited before the reader came took its output with it, and
/// the reader's open then waited for a writer that never came: containerd
/// hung in ExecSync of a fast command.
fn open_fifo_writer(path: &str) -> Result<File> {
    let deadline = Instant::now() + FIFO_READER_TIMEOUT;
    loop {
        // Non-blocking: ENXIO while nobody has it open for reading.
        match OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK).open(path) {
            Ok(file) => {
                // The process writes to it as to any stdout: blocking.
                let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).map_err(|e| ShimError::Internal(format!("fcntl {path}: {e}")))?;
                let blocking = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
                nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(blocking)).map_err(|e| ShimError::Internal(format!("fcntl {path}: {e}")))?;
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(ShimError::DeadlineExceeded(format!("open {path}: no reader within {}s", FIFO_READER_TIMEOUT.as_secs())))
            }
            Err(e) => return Err(ShimError::InvalidArgument(format!("open {path}: {e}"))),
        }
    }
}

/// Feeds the child's input from `path` (a fifo, usually) until it ends.
async fn feed_stdin(path: &PathBuf, stdin: &Stdin) {
    // Non-blocking: a fifo with no writer yet opens at once and polls
    // readable only once a writer came (and wrote, or went).
    let source = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK).open(path).map(OwnedFd::from).and_then(Fd::reader);
    let source = match source {
        Ok(f) => f,
        Err(e) => {
            log::warn!("open stdin {}: {e}", path.display());
            return;
        }
    };
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match source.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !stdin.write(&buf[..n]).await {
            return;
        }
    }
}

/// (read end, write end).
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ShimError::Internal(format!("pipe: {e}")))
}
