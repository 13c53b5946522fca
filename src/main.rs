//! The `velt` binary: parse the command line, set up logging, run the chosen command.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use velt::{App, Config};

#[derive(Debug, Parser)]
#[command(name = "velt", version, about = "Backend for wearable motion sensors")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a signed service token: the MQTT password of an integration (client id
    /// `svc-<name>` or `svc-<name>-<suffix>`) with its own topic ACL.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// Service name: 1 to 64 letters, digits, `_` or `.` (no `-`)
    #[arg(long)]
    name: String,
    /// A rule `pub:<filter>` or `sub:<filter>`; repeat for more.
    #[arg(long = "acl", required = true)]
    acl: Vec<velt::auth::AclRule>,
    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: std::time::Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt().with_env_filter(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    );
    if matches!(cli.command, Some(Command::Token(_))) {
        // stdout is the token itself.
        logs.with_writer(std::io::stderr).init();
    } else {
        logs.init();
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => App::build(cli.config).await?.run(shutdown_signal()).await,
        Command::Migrate => {
            std::fs::create_dir_all(&cli.config.data_dir)?;
            let store = velt::app::connect(&cli.config).await?;
            store.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Token(args) => {
            anyhow::ensure!(
                velt::auth::token::is_valid_service_name(&args.name),
                "invalid service name {:?}: use 1 to 64 letters, digits, `_` or `.`",
                args.name
            );
            let tokens = velt::auth::configured_tokens(&cli.config)?;
            let issued = tokens.issue_service(&args.name, args.acl, args.ttl)?;
            println!("{}", issued.token);
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
