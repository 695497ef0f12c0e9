//! `berthctl login` and `logout`: credentials checked by berthd against
//! the registry (its TLS settings are the ones pulls use), then stored as
//! Docker stores them (see `credentials`).

use std::{io::Read, path::Path};

use anyhow::Context;
use berth_api::admin::v1::{images_client::ImagesClient, LoginRequest};
use clap::Args;

use crate::{
    client::{connect, rpc_error},
    credentials,
};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("secret").required(true).args(["password", "password_stdin"]))]
pub struct LoginArgs {
    #[arg(short, long, required = true)]
    pub username: String,
    /// The password (visible to other users in the process list: prefer
    /// --password-stdin).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin (its first line).
    #[arg(long)]
    pub password_stdin: bool,
    /// `host[:port]` of the registry, as image names spell it.
    #[arg(value_parser = credentials::registry_arg)]
    pub registry: String,
}

pub async fn login(socket: &Path, args: LoginArgs) -> anyhow::Result<()> {
    let password = match args.password {
        Some(p) => {
            eprintln!("WARNING: a password given with -p shows in the process list; prefer --password-stdin");
            p
        }
        None => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).context("read the password from stdin")?;
            input.lines().next().unwrap_or("").to_string()
        }
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    let mut client = ImagesClient::new(connect(socket).await?);
    client
        .login(LoginRequest { registry: args.registry.clone(), username: args.username.clone(), password: password.clone() })
        .await
        .map_err(rpc_error("login"))?;
    let file = credentials::store(&args.registry, &args.username, &password)?;
    println!("Login Succeeded (credentials stored in {})", file.display());
    Ok(())
}

pub fn logout(registry: &str) -> anyhow::Result<()> {
    if credentials::remove(registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(())
}
