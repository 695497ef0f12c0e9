//! berthctl: the operator's CLI. It talks to berthd over the same CRI
//! socket the kubelet uses, so what it shows is what the kubelet sees.

mod client;
mod containers;
mod cp;
mod credentials;
mod history;
mod images;
mod import;
mod info;
mod inspect;
mod interactive;
mod kube_manifest;
mod login;
mod logs;
mod play;
mod port;
mod progress;
mod prune;
mod ps;
mod pull;
mod push;
mod resolve;
mod run_flags;
mod save;
mod stats;
mod supervise;
mod top;
mod volumes;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berthctl", version, about = "Operate berth, the Kubernetes container runtime")]
struct Cli {
    /// berthd's CRI socket.
    #[arg(long, global = true, default_value = "/run/berth/berth.sock", env = "BERTH_SOCKET")]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runtime name, version and readiness.
    Info,
    /// Image commands.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Pull an image (same as `images pull`).
    Pull(images::PullArgs),
    /// Remove images (same as `images rm`).
    Rmi { images: Vec<String> },
    /// Give an image one more name (it leaves any image that had it).
    Tag {
        #[arg(value_parser = credentials::image_arg)]
        source: String,
        #[arg(value_parser = credentials::tag_arg)]
        target: String,
    },
    /// Push an image to the registry its name points at (credentials from
    /// `login`, else berthd's `registry.auth_file`).
    Push {
        #[arg(value_parser = credentials::tag_arg)]
        image: String,
    },
    /// Check credentials against a registry and store them (Docker's
    /// config.json: $DOCKER_CONFIG/config.json, default ~/.docker/config.json).
    Login(login::LoginArgs),
    /// Remove a registry's stored credentials.
    Logout {
        #[arg(value_parser = credentials::registry_arg)]
        registry: String,
    },
    /// Write images as an OCI image layout tar or a `docker save` archive
    /// (`images import` loads it back).
    Save(save::SaveArgs),
    /// The layers of an image and the steps that made them, newest first.
    History {
        /// Show whole commands.
        #[arg(long)]
        no_trunc: bool,
        #[arg(value_parser = credentials::image_arg)]
        image: String,
    },
    /// Run a container in a pod of its own; follows its output and exits
    /// with its exit code (unless --detach).
    Run(Box<containers::RunArgs>),
    /// List containers (running ones, or all with --all).
    Ps(ps::PsArgs),
    /// Print a container's log (stdout and stderr).
    Logs {
        #[command(flatten)]
        options: logs::LogOptions,
        container: String,
    },
    /// Run a command in a running container and exit with its exit code.
    /// Without -i/-t it runs to its end and its output is printed; with
    /// them it streams (through berthd's streaming server).
    Exec {
        /// Seconds before the command is killed (0: no limit; not with -i/-t).
        #[arg(long, default_value_t = 0)]
        timeout: i64,
        /// Send stdin to the command.
        #[arg(short, long)]
        interactive: bool,
        /// Give the command a terminal (this one, in raw mode).
        #[arg(short, long)]
        tty: bool,
        container: String,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Attach to a running container's output (and its stdin and
    /// terminal, if it was created with them) until it exits; exits with
    /// its exit code.
    Attach { container: String },
    /// Copy files or directories out of or into a running container:
    /// `cp CONTAINER:SRC DEST`, `cp SRC CONTAINER:DEST` (`-`: a tar stream
    /// on stdout or stdin). Owner, mode and mtime are kept.
    Cp(cp::CpArgs),
    /// Stop containers: the image's stop signal, then SIGKILL after --time.
    Stop {
        #[arg(short, long, default_value_t = 10)]
        time: i64,
        containers: Vec<String>,
    },
    /// Remove containers (and the pod `run` made for each).
    Rm {
        /// Also remove running containers (they are killed).
        #[arg(short, long)]
        force: bool,
        containers: Vec<String>,
    },
    /// Run a Kubernetes Pod (or a workload's pod template) from its YAML
    /// on this node: `berthctl play kube pod.yaml`.
    Play {
        #[command(subcommand)]
        what: PlayCommand,
    },
    /// Stop and remove the pod `play kube FILE` made, and its emptyDirs.
    Down { file: PathBuf },
    /// The host ports a container's pod publishes.
    Port { container: String },
    /// A running container's processes (host pids).
    Top { container: String },
    /// Container commands: `prune` removes every exited container.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// System commands: `df` shows what images, containers and volumes hold.
    #[command(subcommand)]
    System(SystemCommand),
    /// What berthd knows of containers, pods or images, as JSON.
    Inspect { names: Vec<String> },
    /// CPU and memory of running containers (all, or those named).
    Stats {
        /// Print one table and exit (default on a terminal: refresh every second).
        #[arg(long)]
        no_stream: bool,
        containers: Vec<String>,
    },
    /// Named volumes (`run -v NAME:/path`).
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
    /// Print a shell completion script: `berthctl completion bash >
    /// /etc/bash_completion.d/berthctl` (or zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
    /// Print berthctl's manual page (roff), for `man -l -` or packaging.
    #[command(hide = true)]
    Man,
    /// The restartPolicy supervisor of a `play kube` pod (play kube starts
    /// it, `down` ends it).
    #[command(name = "__supervise-pod", hide = true)]
    SupervisePod {
        /// Its directory (the plan, its pid, its log).
        #[arg(long)]
        state: PathBuf,
        pod: String,
    },
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// Remove every exited container (and the pod `run` made for it).
    Prune,
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Images, containers and volumes: how many, how large, how much is unused.
    Df,
    /// Remove every exited container, then every image no container uses.
    Prune,
}

#[derive(Subcommand)]
enum PlayCommand {
    /// A Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet or Job manifest.
    Kube(play::PlayArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let socket = &cli.socket;
    let result = match cli.command {
        Command::Info => info::run(socket).await.map(|()| 0),
        Command::Images(cmd) => images::run(socket, cmd).await.map(|()| 0),
        Command::Pull(args) => images::run(socket, images::ImagesCommand::Pull(args)).await.map(|()| 0),
        Command::Rmi { images } => images::run(socket, images::ImagesCommand::Rm { images }).await.map(|()| 0),
        Command::Tag { source, target } => images::tag(socket, &source, &target).await.map(|()| 0),
        Command::Push { image } => push::push(socket, &image).await.map(|()| 0),
        Command::Login(args) => login::login(socket, args).await.map(|()| 0),
        Command::Logout { registry } => login::logout(&registry).map(|()| 0),
        Command::Save(args) => save::save(socket, args).await.map(|()| 0),
        Command::History { no_trunc, image } => history::history(socket, &image, no_trunc).await.map(|()| 0),
        Command::Run(args) => containers::run(socket, *args).await,
        Command::Ps(args) => ps::run(socket, args).await.map(|()| 0),
        Command::Logs { options, container } => logs::run(socket, &container, options).await.map(|()| 0),
        Command::Exec { timeout: _, interactive, tty, container, command } if interactive || tty => {
            interactive::exec(socket, &container, command, interactive, tty).await
        }
        Command::Exec { timeout, container, command, .. } => containers::exec(socket, &container, command, timeout).await,
        Command::Attach { container } => interactive::attach(socket, &container).await,
        Command::Cp(args) => cp::run(socket, args).await.map(|()| 0),
        Command::Stop { time, containers } => containers::stop(socket, containers, time).await.map(|()| 0),
        Command::Rm { force, containers } => containers::rm(socket, containers, force).await.map(|()| 0),
        Command::Play { what: PlayCommand::Kube(args) } => play::play(socket, args).await.map(|()| 0),
        Command::Down { file } => play::down(socket, &file).await.map(|()| 0),
        Command::Port { container } => port::run(socket, &container).await.map(|()| 0),
        Command::Top { container } => top::run(socket, &container).await.map(|()| 0),
        Command::Container(ContainerCommand::Prune) => prune::containers(socket).await.map(|()| 0),
        Command::System(SystemCommand::Df) => prune::df(socket).await.map(|()| 0),
        Command::System(SystemCommand::Prune) => async {
            prune::containers(socket).await?;
            prune::images(socket).await
        }
        .await
        .map(|()| 0),
        Command::Inspect { names } => inspect::run(socket, names).await.map(|()| 0),
        Command::Stats { no_stream, containers } => stats::run(socket, containers, no_stream).await.map(|()| 0),
        Command::Volume(cmd) => volumes::run(socket, cmd).await.map(|()| 0),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "berthctl", &mut std::io::stdout());
            Ok(0)
        }
        Command::SupervisePod { state, pod } => supervise::run(socket, &state, &pod).await.map(|()| 0),
        Command::Man => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map(|()| 0).map_err(anyhow::Error::from),
    };
    match result {
        // A container's exit code is berthctl's, as with `docker run`.
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("berthctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
