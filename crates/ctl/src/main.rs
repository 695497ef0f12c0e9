//! berthctl: the operator's CLI. It talks to berthd over the same CRI
//! socket the kubelet uses, so what it shows is what the kubelet sees.

mod client;
mod images;
mod info;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info::run(&cli.socket).await,
        Command::Images(cmd) => images::run(&cli.socket, cmd).await,
        Command::Pull(args) => images::run(&cli.socket, images::ImagesCommand::Pull(args)).await,
        Command::Rmi { images } => images::run(&cli.socket, images::ImagesCommand::Rm { images }).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
