//! The `identity` binary: `serve` (default), `migrate`, `create-superuser`, `keys`,
//! `import-django`.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use clap::{Parser, Subcommand};
use identity::{
    app::{self, Application},
    auth::HashFormat,
    clock::Clock,
    config::Config,
    django_source::{self, FieldNames, Source, SourceSpec},
    domain::{Email, Password},
    services::django_import::ImportOptions,
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
    /// Import a Django deployment's users, keeping ids and password hashes (safe to re-run,
    /// and beside a running server).
    ImportDjango(ImportDjango),
}

#[derive(clap::Args)]
#[expect(
    clippy::doc_markdown,
    reason = "these comments are the --help text, where backticks would show"
)]
struct ImportDjango {
    /// Read a `manage.py dumpdata` JSON file.
    #[arg(long, value_name = "FILE", conflicts_with = "from_database")]
    from_json: Option<std::path::PathBuf>,
    /// Read the Django Postgres database at this URL (or set DJANGO_DATABASE_URL, which
    /// --from-json and --status leave aside).
    #[arg(long, value_name = "URL")]
    from_database: Option<String>,
    /// The user model in a dumpdata file (`app_label.model`).
    #[arg(long, default_value = "auth.user")]
    model: String,
    /// The user table in the Django database.
    #[arg(long, default_value = "auth_user")]
    table: String,
    /// A field's name in a custom user model, `field=name` (`name` empty: the model has
    /// none); fields: id, email, password, first_name, last_name, is_active, is_staff,
    /// is_superuser, date_joined, last_login, is_verified.
    #[arg(long = "field", value_name = "FIELD=NAME")]
    fields: Vec<String>,
    /// Only report how many accounts hold each password hash format, and whether this
    /// build can check it; nothing is written.
    #[arg(long)]
    check: bool,
    /// Import accounts whose hash format this build cannot check, without a usable
    /// password (they reset it); without this, such a format stops the import.
    #[arg(long)]
    unknown_hashes_unusable: bool,
    /// The model marks accounts that never activated as inactive (the seed's way): import
    /// them active but unverified, so activation links Django mailed, or new codes, let
    /// them in.
    #[arg(long)]
    inactive_means_unverified: bool,
    /// Report how many accounts here still hold each hash format (no source needed).
    #[arg(long, conflicts_with_all = ["from_json", "from_database", "check"])]
    status: bool,
    /// How many ids past the largest Django id accounts made here start, so the users
    /// Django adds while both systems run keep their ids free for the next import.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(0..))]
    id_headroom: i64,
    /// Accounts per transaction.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
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
        Command::ImportDjango(args) => import_django(config, args).await,
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

async fn import_django(config: Config, args: ImportDjango) -> anyhow::Result<()> {
    let services = app::services(config, Clock::default()).await?;
    if args.status {
        let formats = services
            .password_formats()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        print_formats(&formats);
        let legacy: u64 = formats
            .iter()
            .filter(|(format, _)| format.is_verifiable() && **format != HashFormat::Argon2id)
            .map(|(_, count)| count)
            .sum();
        println!("{legacy} accounts still hold a legacy hash (re-hashed at their next sign-in)");
        return Ok(());
    }
    // Read here rather than by clap: an exported DJANGO_DATABASE_URL is the default source,
    // never a conflict with --from-json or --status.
    let from_database = args.from_database.or_else(|| {
        std::env::var("DJANGO_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
    });
    let spec = match (args.from_json, from_database) {
        (Some(path), _) => SourceSpec::Dumpdata {
            path,
            model: args.model,
        },
        (None, Some(url)) => SourceSpec::Database {
            url: url.into(),
            table: args.table,
        },
        (None, None) => anyhow::bail!("name a source: --from-json FILE or --from-database URL"),
    };
    let mut source = Source::open(spec, FieldNames::with_overrides(&args.fields)?).await?;
    if args.check {
        let formats = django_source::survey(&mut source, args.batch_size).await?;
        print_formats(&formats);
        return Ok(());
    }
    let options = ImportOptions {
        unknown_hashes_as_unusable: args.unknown_hashes_unusable,
        inactive_means_unverified: args.inactive_means_unverified,
        id_headroom: args.id_headroom,
    };
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let tally = django_source::import(
        &services,
        &mut source,
        options,
        args.batch_size,
        |done, total| {
            if terminal {
                let width = 30;
                let filled =
                    usize::try_from(done.saturating_mul(width) / total.max(1)).unwrap_or(0);
                eprint!(
                    "\r[{}{}] {done}/{total}",
                    "#".repeat(filled),
                    " ".repeat(30usize.saturating_sub(filled))
                );
            }
        },
    )
    .await?;
    if terminal {
        eprintln!();
    }
    println!(
        "imported {}, updated {}, unchanged {}, skipped {} in {:.1} s; {} blacklisted refresh tokens",
        tally.imported,
        tally.updated,
        tally.unchanged,
        tally.skipped.len(),
        started.elapsed().as_secs_f64(),
        tally.blacklisted_refresh_tokens
    );
    for skipped in &tally.skipped {
        println!("  skipped {}: {}", skipped.id, skipped.reason);
    }
    Ok(())
}

fn print_formats(formats: &std::collections::BTreeMap<HashFormat, u64>) {
    println!("{:<18} {:>10}  checkable here", "format", "accounts");
    for (format, count) in formats {
        let checkable = if format.is_verifiable() { "yes" } else { "no" };
        println!("{:<18} {count:>10}  {checkable}", format.to_string());
    }
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
