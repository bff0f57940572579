//! The `warren` binary: parses settings and runs a node (`warren server`).

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use warren::config::Config;

#[derive(Parser, Debug)]
#[command(name = "warren", version, about = "A clustered, replicated AMQP 0-9-1 message broker")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a broker node.
    Server(ServerArgs),
    /// Administer a node (rabbitmqctl's command names).
    Ctl(warren::ctl::CtlArgs),
}

/// Settings given here override the config file; each also reads a `WARREN_*` variable.
#[derive(Parser, Debug)]
struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// AMQP 0-9-1 listener address [default: 0.0.0.0:5672].
    #[arg(long, env = "WARREN_AMQP_ADDR")]
    amqp_addr: Option<SocketAddr>,
    /// Management HTTP listener address [default: 0.0.0.0:15672].
    #[arg(long, env = "WARREN_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Prometheus metrics listener address [default: 0.0.0.0:15692].
    #[arg(long, env = "WARREN_PROMETHEUS_ADDR")]
    prometheus_addr: Option<SocketAddr>,
    /// Data directory [default: ./warren-data].
    #[arg(long, env = "WARREN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Largest accepted message body in bytes [default: 16777216].
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE")]
    max_message_size: Option<u64>,
    /// Also append the log to this file (as well as standard error).
    #[arg(long, env = "WARREN_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Proposed heartbeat interval in seconds [default: 60].
    #[arg(long, env = "WARREN_HEARTBEAT")]
    heartbeat: Option<u16>,
    /// This node's name [default: warren@<hostname>].
    #[arg(long, env = "WARREN_NODE_NAME")]
    node_name: Option<String>,
    /// Inter-node listener address [default: 0.0.0.0:25672].
    #[arg(long, env = "WARREN_CLUSTER_ADDR")]
    cluster_addr: Option<SocketAddr>,
    /// The host:port peers dial to reach this node [default: <hostname>:<cluster port>].
    #[arg(long, env = "WARREN_ADVERTISE_ADDR")]
    advertise_addr: Option<String>,
    /// Cluster addresses (host:port) of the initial members, comma-separated, the same list on
    /// every node.
    #[arg(long, env = "WARREN_PEERS", value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Nodes of another cluster name are refused [default: warren].
    #[arg(long, env = "WARREN_CLUSTER_NAME")]
    cluster_name: Option<String>,
    /// File holding the shared cluster secret (RabbitMQ's Erlang cookie).
    #[arg(long, env = "WARREN_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// The shared cluster secret itself (only from the environment, never on a command line
    /// that `ps` shows).
    #[arg(skip = std::env::var("WARREN_CLUSTER_SECRET").ok())]
    cluster_secret: Option<String>,
    /// The administrator created with a new database instead of guest (RabbitMQ's
    /// RABBITMQ_DEFAULT_USER); its password comes from WARREN_DEFAULT_PASS.
    #[arg(long, env = "WARREN_DEFAULT_USER")]
    default_user: Option<String>,
    /// The default user's password (only from the environment).
    #[arg(skip = std::env::var("WARREN_DEFAULT_PASS").ok())]
    default_pass: Option<String>,
    /// What a plain durable declare (no x-queue-type) gets [default: classic].
    #[arg(long, env = "WARREN_DEFAULT_QUEUE_TYPE", value_parser = ["classic", "quorum"])]
    default_queue_type: Option<String>,
}

impl ServerArgs {
    fn into_config(self) -> Result<Config, String> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        if let Some(v) = self.amqp_addr {
            c.amqp_addr = v;
        }
        if let Some(v) = self.http_addr {
            c.http_addr = v;
        }
        if let Some(v) = self.prometheus_addr {
            c.prometheus_addr = v;
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.max_message_size {
            c.max_message_size = v;
        }
        if let Some(v) = self.heartbeat {
            c.heartbeat = v;
        }
        if let Some(v) = self.node_name {
            c.node_name = Some(v);
        }
        if let Some(v) = self.cluster_addr {
            c.cluster.listen_addr = v;
        }
        if let Some(v) = self.advertise_addr {
            c.cluster.advertise_addr = Some(v);
        }
        if let Some(v) = self.peers {
            c.cluster.peers = v.into_iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
        }
        if let Some(v) = self.cluster_name {
            c.cluster.name = v;
        }
        // A secret given here replaces either form from the file.
        if let Some(v) = self.cluster_secret_file {
            (c.cluster.secret, c.cluster.secret_file) = (None, Some(v));
        }
        if let Some(v) = self.cluster_secret {
            (c.cluster.secret, c.cluster.secret_file) = (Some(v), None);
        }
        match (self.default_user, self.default_pass) {
            (Some(user), Some(pass)) => (c.default_user_name, c.default_pass) = (user, pass),
            (None, None) => {}
            (Some(_), None) => return Err("WARREN_DEFAULT_USER needs WARREN_DEFAULT_PASS".into()),
            (None, Some(_)) => return Err("WARREN_DEFAULT_PASS needs WARREN_DEFAULT_USER".into()),
        }
        if let Some(v) = self.default_queue_type {
            c.default_queue_type = if v == "quorum" {
                warren::broker::argument::QueueType::Quorum
            } else {
                warren::broker::argument::QueueType::Classic
            };
        }
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// The log filter unless `WARREN_LOG` says otherwise: openraft's warnings, except for each
/// group's failed replication or heartbeat to an unreachable member, which a node down repeats
/// for every group it leads (Warren logs the node going down once, `node/peers.rs`).
const QUIET: &str = "info,openraft=warn,openraft::replication=error,openraft::engine::handler::replication_handler=error,openraft::core::heartbeat=error";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `warren ctl` exits with rabbitmqctl's 64 on usage errors; the server keeps clap's 2.
        Err(e) if std::env::args_os().nth(1).is_some_and(|a| a == "ctl") => return warren::ctl::parse_failed(e),
        Err(e) => e.exit(),
    };
    let log_file = match &cli.command {
        Cmd::Server(a) => a.log_file.clone(),
        _ => None,
    };
    let filter = || tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG").unwrap_or_else(|_| QUIET.into());
    let file =
        match log_file.map(|p| std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(|e| (p, e))) {
            Some(Ok(f)) => Some(f),
            Some(Err((p, e))) => {
                eprintln!("warren: cannot open the log file {}: {e}", p.display());
                return ExitCode::from(2);
            }
            None => None,
        };
    match file {
        // Both standard error and the file, the file without colours.
        Some(f) => {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let to_file = tracing_subscriber::fmt::layer().with_writer(std::sync::Mutex::new(f)).with_ansi(false);
            let to_stderr = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
            tracing_subscriber::registry().with(filter()).with(to_stderr).with(to_file).init();
        }
        None => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match cli.command {
        Cmd::Server(args) => {
            let config = match args.into_config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("warren: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("warren: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(serve(config))
        }
        Cmd::Ctl(args) => warren::ctl::run(args),
    }
}

async fn serve(config: Config) -> ExitCode {
    let running = match warren::server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down: closing client connections");
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
