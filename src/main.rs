//! The `authgate` command: serve, check a config, and operator tasks. Exit codes: 0 success,
//! 1 runtime failure, 2 configuration error.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use authgate::config::{self, Config};
use authgate::{StartError, telemetry};

#[derive(Parser)]
#[command(name = "authgate", version, about = "Reverse-proxy authentication gateway")]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = "gateway.toml", env = "AUTHGATE_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Validate the configuration and print the effective values, secrets masked.
    CheckConfig,
    /// Manage users in the configured store.
    #[command(subcommand)]
    User(UserCommand),
    /// Long-lived API tokens for programs.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Who may reach what: the `[policy]` rules.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// RAGFlow API keys the ragflow profile sends upstream, sealed in the store.
    #[command(subcommand)]
    BackendKey(BackendKeyCommand),
}

/// `--user NAME` or `--group NAME`, exactly one.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct KeyOwnerArgs {
    /// A user, by username or id.
    #[arg(long)]
    user: Option<String>,
    /// A group (local or from a provider); its members without a key of their own use it.
    #[arg(long)]
    group: Option<String>,
}

impl KeyOwnerArgs {
    fn owner(&self) -> authgate::cli::KeyOwner<'_> {
        match (&self.user, &self.group) {
            (Some(u), _) => authgate::cli::KeyOwner::User(u),
            (None, Some(g)) => authgate::cli::KeyOwner::Group(g),
            // clap's group makes one of the two required.
            (None, None) => authgate::cli::KeyOwner::Group(""),
        }
    }
}

#[derive(Subcommand)]
enum BackendKeyCommand {
    /// Store a user's or a group's RAGFlow API key, read from stdin (one trailing newline is dropped).
    Set(KeyOwnerArgs),
    /// Remove a user's or a group's key.
    Remove(KeyOwnerArgs),
    /// List who has a key and which encryption key sealed it (never the key).
    List,
    /// Re-seal every key under upstream.ragflow.key_encryption_key (after moving the old one to previous_keys).
    Rotate,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print what the policy decides for a request, and the rule that decides it.
    Explain {
        /// The caller (by username or id); without it, a caller with no credential.
        #[arg(long)]
        user: Option<String>,
        /// The credential's scopes (repeat, or comma-separated); without it, `full` (a login).
        #[arg(long = "scope", value_delimiter = ',', requires = "user")]
        scopes: Vec<String>,
        /// e.g. GET
        method: String,
        /// e.g. /api/collections/1
        path: String,
    },
}

#[derive(Subcommand)]
enum GroupsCommand {
    /// Add the user to a local group.
    Add { group: String },
    /// Remove the user from a local group (a provider's groups come from its claim).
    Remove { group: String },
    /// List the user's role and groups (the default).
    List,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a user (by username or id); the token is printed once.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        /// Lifetime in seconds (default: no expiry).
        #[arg(long)]
        expires_in: Option<u64>,
        /// What the token may do within the user's rights: `read` (GET and HEAD), `full`, or a
        /// name that policy rules grant with `scope:<name>`. Repeat, or comma-separate; default
        /// `full`.
        #[arg(long = "scope", value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// List a user's API tokens (by username or id), with their scopes; never a secret.
    List {
        #[arg(long)]
        user: String,
    },
    /// Revoke an API token by id, whoever owns it; running gateways refuse it at once with Redis.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password is read from stdin with --password-stdin, else generated and shown once.
    Add {
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user (by username or id): logins and all their tokens are refused.
    Disable { user: String },
    /// Enable a disabled user.
    Enable { user: String },
    /// Set a user's role: user (the default) or admin.
    Role { user: String, role: String },
    /// List a user's role and groups, or add or remove a local group.
    Groups {
        user: String,
        #[command(subcommand)]
        change: Option<GroupsCommand>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new key pair (or print an HMAC secret) and the [[jwt.keys]] entry to add.
    Generate {
        #[arg(long, default_value = "ES256")]
        algorithm: String,
        #[arg(long)]
        kid: Option<String>,
        #[arg(long, default_value = "keys")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(&cli.config),
        Command::Keys(KeysCommand::Generate { algorithm, kid, out }) => {
            report(authgate::cli::keys_generate(&algorithm, kid.as_deref(), &out))
        }
        Command::Token(cmd) => operator(&cli.config, |config| async move {
            match cmd {
                TokenCommand::Create {
                    user,
                    name,
                    expires_in,
                    scopes,
                } => {
                    let args = authgate::cli::NewTokenArgs {
                        user: &user,
                        name: &name,
                        expires_in,
                        scopes: &scopes,
                    };
                    authgate::cli::token_create(&config, &args).await
                }
                TokenCommand::List { user } => authgate::cli::token_list(&config, &user).await,
                TokenCommand::Revoke { id } => authgate::cli::token_revoke(&config, &id).await,
            }
        }),
        Command::User(cmd) => operator(&cli.config, |config| async move {
            match cmd {
                UserCommand::Add {
                    username,
                    email,
                    password_stdin,
                } => authgate::cli::user_add(&config, &username, &email, password_stdin).await,
                UserCommand::List => authgate::cli::user_list(&config).await,
                UserCommand::Disable { user } => authgate::cli::user_set_disabled(&config, &user, true).await,
                UserCommand::Enable { user } => authgate::cli::user_set_disabled(&config, &user, false).await,
                UserCommand::Role { user, role } => authgate::cli::user_role(&config, &user, &role).await,
                UserCommand::Groups { user, change } => {
                    let change = match &change {
                        Some(GroupsCommand::Add { group }) => Some((true, group.as_str())),
                        Some(GroupsCommand::Remove { group }) => Some((false, group.as_str())),
                        Some(GroupsCommand::List) | None => None,
                    };
                    authgate::cli::user_groups(&config, &user, change).await
                }
            }
        }),
        Command::BackendKey(cmd) => operator(&cli.config, |config| async move {
            match &cmd {
                BackendKeyCommand::Set(who) => authgate::cli::backend_key_set(&config, who.owner()).await,
                BackendKeyCommand::Remove(who) => authgate::cli::backend_key_remove(&config, who.owner()).await,
                BackendKeyCommand::List => authgate::cli::backend_key_list(&config).await,
                BackendKeyCommand::Rotate => authgate::cli::backend_key_rotate(&config).await,
            }
        }),
        Command::Policy(PolicyCommand::Explain {
            user,
            scopes,
            method,
            path,
        }) => operator(&cli.config, |config| async move {
            authgate::cli::policy_explain(&config, user.as_deref(), &scopes, &method, &path).await
        }),
        Command::Serve => {
            let config = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("authgate: {e}");
                    return ExitCode::from(2);
                }
            };
            telemetry::init(&config.log);
            log_ignored_env_vars();
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("authgate: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(authgate::serve(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("authgate: {e}");
                    match e {
                        StartError::Config(_) => ExitCode::from(2),
                        _ => ExitCode::from(1),
                    }
                }
            }
        }
    }
}

/// Name (never show) the `AUTHGATE_*` variables that are not `AUTHGATE_<SECTION>__<KEY>` config:
/// a warning for one that looks like config but names no section (a typo), a debug line otherwise.
fn log_ignored_env_vars() {
    for name in authgate::config::ignored_env_vars() {
        if name["AUTHGATE_".len()..].contains("__") {
            tracing::warn!(variable = %name, "names no config section; ignored (AUTHGATE_<SECTION>__<KEY>)");
        } else {
            tracing::debug!(variable = %name, "not a config variable (AUTHGATE_<SECTION>__<KEY>); ignored");
        }
    }
}

/// Run an operator command on the configured store: exit 2 for a config error, 1 for a failure.
fn operator<F, Fut>(path: &std::path::Path, command: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), authgate::cli::CliError>>,
{
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authgate: {e}");
            return ExitCode::from(2);
        }
    };
    // Operator commands write their audit events (JSON lines on stderr) like the server.
    telemetry::init(&config.log);
    log_ignored_env_vars();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authgate: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    report(runtime.block_on(command(config)))
}

fn report(result: Result<(), authgate::cli::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgate: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let raw = if path.exists() {
        config::raw_from_figment(config::figment_for(path))
    } else {
        Err(config::ConfigError::Parse(format!(
            "config file {} does not exist",
            path.display()
        )))
    };
    let raw = match raw {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authgate: {e}");
            return ExitCode::from(2);
        }
    };
    let shown = toml::to_string_pretty(&raw).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    match raw.validate() {
        Ok(_) => {
            println!(
                "# {}: valid. Effective configuration (secrets masked):\n{shown}",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("authgate: {e}");
            ExitCode::from(2)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
