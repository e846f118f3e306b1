//! The `identity` binary: `serve` (default), `migrate`, `create-superuser`.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use clap::{Parser, Subcommand};
use identity::{
    app::{self, Application},
    clock::Clock,
    config::Config,
    domain::{Email, Password},
    storage::Store,
    telemetry,
};

/// A standalone identity service over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate the database, then serve gRPC until SIGTERM or Ctrl-C (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create a verified staff superuser; the password is read from a prompt or standard input.
    CreateSuperuser {
        /// The superuser's email address.
        #[arg(long)]
        email: String,
    },
    /// The access-token signing keys (safe beside a running server).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the keys and their states.
    List,
    /// Publish a new key that signs once every verifier can have fetched it.
    Rotate,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("identity: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let _tracing = match telemetry::init(config.log_format, config.otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("identity: invalid setting OTEL_EXPORTER_OTLP_ENDPOINT: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config).await,
        Command::CreateSuperuser { email } => create_superuser(config, &email).await,
        Command::Keys { command } => keys(config, command).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("identity: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database, 1, config.statement_timeout).await?;
    store.migrate().await.context("migrating the database")?;
    eprintln!("identity: migrations applied");
    Ok(())
}

async fn create_superuser(config: Config, email: &str) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("email {e}"))?;
    let password = read_password()?;
    let password = Password::parse(&password).map_err(|e| anyhow::anyhow!("password {e}"))?;
    let services = app::services(config, Clock::default()).await?;
    let user = services
        .create_superuser(email, password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "identity: superuser {} created with id {}",
        user.email, user.id
    );
    Ok(())
}

async fn keys(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    let services = app::services(config, Clock::default()).await?;
    let keys = match command {
        KeysCommand::List => services.signing_keys().await,
        KeysCommand::Rotate => services.rotate_signing_key().await.map(|next| vec![next]),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{:<18} {:>10}  {:<8} activates_at",
        "kid", "generation", "state"
    );
    for key in keys {
        println!(
            "{:<18} {:>10}  {:<8} {}",
            key.kid,
            key.generation,
            key.state.as_str(),
            key.activates_at.to_rfc3339()
        );
    }
    Ok(())
}

/// Reads the password without echo from a terminal, or as one line of piped input; never from argv.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Password (again): ")?;
        anyhow::ensure!(first == second, "the passwords do not match");
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received; draining");
}
