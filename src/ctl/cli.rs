//! The command line of `warren ctl`: rabbitmqctl's command names and options (`-p` is the
//! vhost, `-q` quiet, `-s` silent), plus how to reach the node (`--http-addr`, `--username`,
//! `--password`; `--amqp-addr` for `ping` and `await_startup`).

use super::output::Formatter;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;

#[derive(Parser, Debug)]
pub struct CtlArgs {
    /// The node's AMQP address (ping, await_startup).
    #[arg(long, env = "WARREN_AMQP_ADDR", default_value = "127.0.0.1:5672", global = true)]
    pub amqp_addr: SocketAddr,
    /// The node's management HTTP API: host:port or http://host:port[/prefix].
    #[arg(long, env = "WARREN_HTTP_ADDR", default_value = "127.0.0.1:15672", global = true)]
    pub http_addr: String,
    /// User for the management API.
    #[arg(long, env = "WARREN_CTL_USER", default_value = "guest", global = true)]
    pub username: String,
    /// Password for the management API.
    #[arg(long, env = "WARREN_CTL_PASSWORD", default_value = "guest", global = true, hide_env_values = true)]
    pub password: String,
    /// Seconds to wait.
    #[arg(long, short = 't', default_value_t = 10, global = true)]
    pub timeout: u64,
    /// Suppress informational messages.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Suppress informational messages and table header rows.
    #[arg(long, short = 's', global = true)]
    pub silent: bool,
    /// Leave out table header rows.
    #[arg(long, global = true)]
    pub no_table_headers: bool,
    /// Output format of listings.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub formatter: Formatter,
    #[command(subcommand)]
    pub command: CtlCmd,
}

/// `-p vhost` of the commands scoped to a virtual host.
#[derive(Args, Debug)]
pub struct Vhost {
    /// Virtual host.
    #[arg(short = 'p', long = "vhost", default_value = "/")]
    pub vhost: String,
}

/// Columns of a listing (`name messages` or `name,messages`).
#[derive(Args, Debug)]
pub struct Columns {
    /// Columns to show (rabbitmqctl's info keys).
    pub columns: Vec<String>,
}

/// `--apply-to` of `set_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ApplyTo {
    Queues,
    Exchanges,
    All,
}

impl ApplyTo {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }
}

#[derive(Subcommand, Debug)]
#[command(rename_all = "snake_case")]
pub enum CtlCmd {
    /// Check that the node accepts AMQP 0-9-1 connections (rabbitmq-diagnostics ping).
    Ping,
    /// Wait until the node accepts AMQP 0-9-1 connections.
    AwaitStartup,
    /// Create a user.
    AddUser {
        name: String,
        /// (Not `--password`, which is the API's.)
        #[arg(value_name = "PASSWORD")]
        new_password: String,
    },
    /// Delete a user.
    DeleteUser { name: String },
    /// Change a user's password.
    ChangePassword {
        name: String,
        #[arg(value_name = "PASSWORD")]
        new_password: String,
    },
    /// Replace a user's tags (none clears them).
    SetUserTags { name: String, tags: Vec<String> },
    /// List users and their tags.
    ListUsers,
    /// Create a virtual host.
    AddVhost { name: String },
    /// Delete a virtual host.
    DeleteVhost { name: String },
    /// List virtual hosts.
    ListVhosts(Columns),
    /// Set a user's permissions in a virtual host.
    SetPermissions {
        #[command(flatten)]
        vhost: Vhost,
        user: String,
        #[arg(allow_hyphen_values = true)]
        conf: String,
        #[arg(allow_hyphen_values = true)]
        write: String,
        #[arg(allow_hyphen_values = true)]
        read: String,
    },
    /// Revoke a user's permissions in a virtual host.
    ClearPermissions {
        #[command(flatten)]
        vhost: Vhost,
        user: String,
    },
    /// List the permissions in a virtual host.
    ListPermissions(Vhost),
    /// List a user's permissions.
    ListUserPermissions { user: String },
    /// List exchanges.
    ListExchanges(VhostColumns),
    /// List queues.
    ListQueues(VhostColumns),
    /// List bindings.
    ListBindings(VhostColumns),
    /// List AMQP connections.
    ListConnections(Columns),
    /// List channels.
    ListChannels(Columns),
    /// List consumers.
    ListConsumers(VhostColumns),
    /// Remove every ready message from a queue.
    PurgeQueue {
        #[command(flatten)]
        vhost: Vhost,
        queue: String,
    },
    /// Delete a queue.
    DeleteQueue {
        #[command(flatten)]
        vhost: Vhost,
        queue: String,
        /// Only if it has no ready messages.
        #[arg(long = "if-empty", short = 'e')]
        if_empty: bool,
        /// Only if it has no consumers.
        #[arg(long = "if-unused", short = 'u')]
        if_unused: bool,
    },
    /// Set or update a policy.
    SetPolicy {
        #[command(flatten)]
        vhost: Vhost,
        name: String,
        #[arg(allow_hyphen_values = true)]
        pattern: String,
        /// The policy's definition, a JSON object.
        definition: String,
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i64,
        #[arg(long = "apply-to", value_enum, default_value = "all")]
        apply_to: ApplyTo,
    },
    /// Clear a policy.
    ClearPolicy {
        #[command(flatten)]
        vhost: Vhost,
        name: String,
    },
    /// List the policies of a virtual host.
    ListPolicies(Vhost),
    /// Turn firehose tracing on for a virtual host.
    TraceOn(Vhost),
    /// Turn firehose tracing off for a virtual host.
    TraceOff(Vhost),
    /// Export definitions as JSON to a file ("-": standard output).
    ExportDefinitions { path: String },
    /// Import definitions from a JSON file ("-": standard input).
    ImportDefinitions { path: String },
    /// Show the status of the node.
    Status,
    /// Show the nodes of the cluster.
    ClusterStatus,
    /// Exit 0 only if the node serves clients as part of a majority with a known metadata
    /// leader (the management API's ready-to-serve-clients check; for container probes).
    CheckReady,
    /// Remove a node that is down for good from the cluster (its replicas go; a node with an
    /// empty data directory started in its place joins as a new member instead).
    ForgetClusterNode {
        /// The node's name (as `cluster_status` lists it).
        node: String,
    },
    /// Set the node's memory alarm threshold: a fraction of RAM, or `absolute <bytes>` (units
    /// as rabbitmqctl's: 512MB, 1GiB, ...). Until the node restarts.
    SetVmMemoryHighWatermark {
        #[arg(num_args = 1..=2, required = true)]
        value: Vec<String>,
    },
    /// Show each member of a quorum queue: Raft state, term, log indexes
    /// (rabbitmq-queues quorum_status).
    QuorumStatus {
        #[command(flatten)]
        vhost: Vhost,
        queue: String,
    },
    /// Move a quorum queue's leadership to the member on NODE, or to the most up-to-date
    /// other member (rabbitmq-queues transfer_leadership).
    TransferLeadership {
        #[command(flatten)]
        vhost: Vhost,
        queue: String,
        node: Option<String>,
    },
    /// Add a replica of a quorum queue on NODE (rabbitmq-queues add_member).
    AddMember {
        #[command(flatten)]
        vhost: Vhost,
        queue: String,
        node: String,
    },
    /// Remove the replica of a quorum queue on NODE (rabbitmq-queues delete_member).
    DeleteMember {
        #[command(flatten)]
        vhost: Vhost,
        queue: String,
        node: String,
    },
    /// Add a replica on NODE to every matching quorum queue lacking one (`all`), or to those
    /// with an even number of replicas (`even`) (rabbitmq-queues grow).
    Grow {
        node: String,
        #[arg(value_parser = ["all", "even"])]
        strategy: String,
        #[arg(long = "vhost-pattern", default_value = ".*")]
        vhost_pattern: String,
        #[arg(long = "queue-pattern", default_value = ".*")]
        queue_pattern: String,
        /// Only list the queues that could not be changed.
        #[arg(long = "errors-only")]
        errors_only: bool,
    },
    /// Remove the replica on NODE from every quorum queue (never a queue's last)
    /// (rabbitmq-queues shrink).
    Shrink {
        node: String,
        /// Only list the queues that could not be changed.
        #[arg(long = "errors-only")]
        errors_only: bool,
    },
    /// Exit 0 only if stopping the node would leave every quorum queue with a majority online.
    CheckIfNodeIsQuorumCritical,
    /// Wait (up to --timeout) until stopping the node would leave every quorum queue with a
    /// majority online (a pre-stop hook).
    AwaitOnlineQuorumPlusOne,
    /// Put the node into maintenance mode: hand its leaderships over, close its clients'
    /// connections, take no new ones (rabbitmq-upgrade drain).
    Drain,
    /// Take the node out of maintenance mode (rabbitmq-upgrade revive).
    Revive,
    /// Spread quorum queue leaders evenly over the running nodes (rabbitmq-queues rebalance).
    Rebalance {
        /// Only `quorum` (or `all`) queues have leaders to move.
        #[arg(default_value = "quorum")]
        kind: String,
    },
    /// Set the node's free disk space threshold (bytes, or with units: 50MB, 2GiB, ...).
    /// Until the node restarts.
    SetDiskFreeLimit { limit: String },
}

/// `-p vhost` and columns.
#[derive(Args, Debug)]
pub struct VhostColumns {
    #[command(flatten)]
    pub vhost: Vhost,
    #[command(flatten)]
    pub columns: Columns,
}

/// Whether `name` is a ctl command (`list_queues`).
pub fn is_command(name: &str) -> bool {
    use clap::CommandFactory;
    CtlArgs::command().find_subcommand(name).is_some()
}

/// The usage line of one ctl command (`Usage: warren ctl list_queues [OPTIONS] ...`).
pub fn usage(command: &str) -> String {
    use clap::CommandFactory;
    let mut cmd = CtlArgs::command().name("ctl").bin_name("warren ctl");
    cmd.build();
    match cmd.find_subcommand_mut(command) {
        Some(sub) => sub.render_usage().to_string(),
        None => cmd.render_usage().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_password_and_a_new_password_are_different_arguments() {
        let a = CtlArgs::try_parse_from(["ctl", "change_password", "u", "new", "--password", "adm"]).unwrap();
        assert_eq!(a.password, "adm");
        assert!(matches!(a.command, CtlCmd::ChangePassword { ref new_password, .. } if new_password == "new"));
        let a = CtlArgs::try_parse_from(["ctl", "add_user", "u", "pw"]).unwrap();
        assert_eq!(a.password, "guest");
    }

    #[test]
    fn rabbitmqctl_options() {
        let a = CtlArgs::try_parse_from(["ctl", "-q", "list_queues", "-p", "v", "name", "messages"]).unwrap();
        assert!(a.quiet);
        let CtlCmd::ListQueues(l) = a.command else { panic!() };
        assert_eq!((l.vhost.vhost.as_str(), l.columns.columns.len()), ("v", 2));
        let a = CtlArgs::try_parse_from(["ctl", "set_permissions", "u", "-bob.*", "", ".*"]).unwrap();
        assert!(matches!(a.command, CtlCmd::SetPermissions { ref conf, .. } if conf == "-bob.*"));
        let a =
            CtlArgs::try_parse_from(["ctl", "set_policy", "p", "^q", "{}", "--apply-to", "queues", "--priority", "-1"]);
        assert!(matches!(a.unwrap().command, CtlCmd::SetPolicy { priority: -1, apply_to: ApplyTo::Queues, .. }));
        assert!(CtlArgs::try_parse_from(["ctl", "set_policy", "p", "^q", "{}", "--apply-to", "bogus"]).is_err());
        assert!(CtlArgs::try_parse_from(["ctl", "delete_queue", "q", "--if-empty", "-u"]).is_ok());
    }
}
