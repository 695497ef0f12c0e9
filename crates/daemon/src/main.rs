//! berthd: the CRI server a kubelet points at
//! (`--container-runtime-endpoint unix:///run/berth/berth.sock`).

mod config;
mod grpc_metrics;
mod malloc_arenas;
mod manual;
mod metrics_server;
mod notify;
mod server;

use std::{os::unix::fs::PermissionsExt, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use config::{CgroupDriver, Config, DEFAULT_CONFIG_PATH};
use tokio::{
    net::UnixListener,
    signal::unix::{signal, SignalKind},
};

#[derive(Parser, Debug)]
#[command(name = "berthd", version, about = "Kubernetes container runtime (CRI v1)")]
struct Cli {
    /// Config file; every key has a default, the file is optional.
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Overrides `socket` from the config file.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Overrides `log_level` from the config file.
    #[arg(long)]
    log_level: Option<String>,
    /// Print this manual page (roff) and exit.
    #[arg(long, hide = true)]
    man: bool,
}

/// How long an idle thread of the blocking pool (file and cgroup work)
/// waits for more before it ends: short, so that a burst of container
/// starts leaves no threads behind for long.
const BLOCKING_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(3);

/// How long stopping waits for blocking work in flight (a record being
/// saved, a layer being unpacked) before berthd exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> anyhow::Result<()> {
    // First, while berthd is one thread that allocated next to nothing.
    malloc_arenas::exec_with_one_arena_unless_set();
    let cli = Cli::parse();
    if cli.man {
        return manual::print::<Cli>().context("print the manual");
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE).build().context("start the async runtime")?;
    let result = runtime.block_on(serve(cli));
    // Exit monitors and streams are tasks: they end with the runtime. The
    // containers keep running; the next berthd reconnects to their shims.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let explicit = cli.config.as_os_str() != DEFAULT_CONFIG_PATH;
    let mut config = Config::load(&cli.config, explicit)?;
    if let Some(socket) = cli.socket {
        config.socket = socket;
    }
    if let Some(level) = cli.log_level {
        config.log_level = level;
    }
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log_level).context("log_level")?).init();

    let default_cgroup_parent = config.effective_default_cgroup_parent()?;
    let systemd_cgroup = config.cgroup_driver == CgroupDriver::Systemd;
    if systemd_cgroup {
        check_systemd()?;
    }
    let listener = bind(&config.socket)?;
    let shim_binary = if config.shim_binary.as_os_str().is_empty() {
        std::env::current_exe().context("locate berthd")?.with_file_name("berth-shim")
    } else {
        config.shim_binary.clone()
    };
    if let Some(missing) = berth_cri::shim_client::missing_shim_binary(&shim_binary) {
        tracing::warn!("{missing}: containers cannot start (RuntimeReady is false)");
    }
    let info = berth_cri::RuntimeInfo {
        systemd_cgroup,
        verbose_config: toml::to_string(&config).unwrap_or_default(),
        shim_binary,
        cni: Some(berth_network::CniConfig {
            conf_dir: config.cni.conf_dir.clone(),
            bin_dirs: config.cni.bin_dirs.clone(),
            plugin_timeout: Duration::from_secs(config.cni.plugin_timeout_secs.max(1)),
        }),
        runtime_handlers: config.runtime_handlers.clone(),
        default_cgroup_parent,
        cdi_spec_dirs: config.cdi.spec_dirs.clone(),
    };
    let paths = berth_store::Paths::new(&config.root, &config.state);
    let pull_options = berth_image::pull::PullOptions {
        insecure_registries: config.registry.insecure.clone(),
        certs_dir: config.registry.certs_dir.clone(),
        stall_timeout: Duration::from_secs(config.registry.stall_timeout_secs.max(1)),
        stall_min_bytes: config.registry.stall_min_bytes,
        max_concurrent_layers: config.registry.max_concurrent_downloads.max(1),
        mirrors: config.registry.mirrors.clone(),
        auth_file: Some(config.registry.auth_file.clone()).filter(|f| !f.as_os_str().is_empty()),
    };
    let metrics = berth_metrics::Metrics::new();
    let metrics_listener = match config.metrics.address.as_str() {
        "" => None,
        address => Some(metrics_server::bind(address).await?),
    };
    let images = std::sync::Arc::new(berth_cri::ImageServer::open(paths.clone(), pull_options, metrics.clone()).context("open image stores")?);
    let streaming = berth_streaming::Streaming::bind(config.streaming.server_config()?).await.context("bind the streaming server")?;
    tracing::info!(url = streaming.base_url(), "streaming server (exec, attach, port-forward) listening");
    let runtime = berth_cri::RuntimeServer::open(info, paths, images.clone(), streaming).await.context("recover runtime state")?;
    tracing::info!(socket = %config.socket.display(), root = %config.root.display(), version = env!("CARGO_PKG_VERSION"), "berthd serving CRI v1");
    // The listener is bound and recovery is done: a client connecting from
    // now on is answered.
    if let Some(listener) = metrics_listener {
        tracing::info!(address = %config.metrics.address, "serving /metrics");
        metrics_server::serve(listener, metrics.clone());
    }
    notify::ready(&format!("serving CRI v1 on {}", config.socket.display()));
    notify::spawn_watchdog();
    let result = server::serve(listener, runtime, images, metrics, async {
        shutdown_signal().await;
        notify::stopping();
    })
    .await;
    let _ = std::fs::remove_file(&config.socket);
    match &result {
        Ok(()) => tracing::info!("berthd stopped"),
        Err(e) => tracing::error!(error = %e, "berthd stopped"),
    }
    result
}

/// The systemd driver needs systemd as this host's init, reachable over
/// D-Bus: fail at start, not at the first container.
fn check_systemd() -> anyhow::Result<()> {
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        anyhow::bail!(
            "cgroup_driver = \"systemd\", but systemd is not this host's init (/run/systemd/system is missing): \
             use cgroup_driver = \"cgroupfs\", with the kubelet's cgroupDriver: cgroupfs"
        );
    }
    let version = berth_cgroups::systemd::version().context("cgroup_driver = \"systemd\", but systemd does not answer over D-Bus (is dbus running?)")?;
    tracing::info!(systemd = %version, "cgroup driver: systemd");
    Ok(())
}

/// Binds the CRI socket, replacing a stale one, readable by root only.
fn bind(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!("{} is in use: is another berthd running?", path.display());
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).with_context(|| format!("listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// SIGTERM or SIGINT: stop serving. Containers are supervised by their
/// shims and keep running.
async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop berthd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
