//! `warren ctl`: administers a node, with `rabbitmqctl`'s command names and output.
//!
//! `ping` and `await_startup` use the AMQP port ([`amqp`]); every other command goes
//! through the node's management HTTP API only ([`http`]), with RabbitMQ's routes, so it
//! works the same against RabbitMQ. The commands live in files named after what they
//! manage: [`access`] (users, permissions), [`vhosts`] (vhosts, tracing), [`queues`]
//! (queues, exchanges, bindings), [`clients`] (connections, channels, consumers),
//! [`policies`], [`definitions`], [`status`]. Output follows rabbitmqctl 3.10 ([`output`],
//! [`columns`]); failures map to its exit codes ([`error`]).

pub mod access;
pub mod amqp;
pub mod cli;
pub mod clients;
pub mod columns;
pub mod definitions;
pub mod error;
pub mod http;
pub mod output;
pub mod policies;
pub mod queues;
pub mod quorum;
pub mod status;
pub mod vhosts;

pub use amqp::{await_startup, ping};
pub use cli::{CtlArgs, CtlCmd};
pub use error::CtlError;

use std::process::ExitCode;
use std::time::Duration;

/// What a command needs: the API and the output settings.
pub struct Ctx {
    pub api: http::Api,
    pub out: output::Out,
    pub timeout: Duration,
}

/// Runs one `warren ctl` command; prints its failure on standard error.
pub fn run(args: CtlArgs) -> ExitCode {
    match dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.report());
            if let CtlError::Usage { command, .. } = &e {
                eprintln!("\n{}", cli::usage(command));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// A command line clap refused: the error and usage text on standard error and, as
/// rabbitmqctl, exit code 64 (`--help` and `--version` print to standard output and succeed).
pub fn parse_failed(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if !e.use_stderr() {
        return ExitCode::SUCCESS;
    }
    // Some of clap's errors (a bad --apply-to) leave the usage out.
    if !e.render().to_string().contains("Usage:") {
        let command = std::env::args().skip(2).find(|a| cli::is_command(a)).unwrap_or_default();
        eprintln!("\n{}", cli::usage(&command));
    }
    ExitCode::from(64)
}

fn dispatch(args: CtlArgs) -> Result<(), CtlError> {
    use CtlCmd as C;
    let timeout = Duration::from_secs(args.timeout);
    let out = output::Out {
        quiet: args.quiet,
        silent: args.silent,
        no_headers: args.no_table_headers,
        formatter: args.formatter,
    };
    let api = match &args.command {
        C::Ping => return amqp::run(args.amqp_addr, timeout, false),
        C::AwaitStartup => return amqp::run(args.amqp_addr, timeout, true),
        _ => http::Api::new(&args.http_addr, &args.username, &args.password, timeout)
            .map_err(|message| CtlError::Usage { command: String::new(), message })?,
    };
    let ctx = Ctx { api, out, timeout };
    match args.command {
        C::Ping | C::AwaitStartup => Ok(()),
        C::AddUser { name, new_password } => access::add_user(&ctx, &name, &new_password),
        C::DeleteUser { name } => access::delete_user(&ctx, &name),
        C::ChangePassword { name, new_password } => access::change_password(&ctx, &name, &new_password),
        C::SetUserTags { name, tags } => access::set_user_tags(&ctx, &name, &tags),
        C::ListUsers => access::list_users(&ctx),
        C::SetPermissions { vhost, user, conf, write, read } => {
            access::set_permissions(&ctx, &vhost.vhost, &user, [&conf, &write, &read])
        }
        C::ClearPermissions { vhost, user } => access::clear_permissions(&ctx, &vhost.vhost, &user),
        C::ListPermissions(v) => access::list_permissions(&ctx, &v.vhost),
        C::ListUserPermissions { user } => access::list_user_permissions(&ctx, &user),
        C::AddVhost { name } => vhosts::add_vhost(&ctx, &name),
        C::DeleteVhost { name } => vhosts::delete_vhost(&ctx, &name),
        C::ListVhosts(c) => vhosts::list_vhosts(&ctx, &c.columns),
        C::TraceOn(v) => vhosts::trace(&ctx, &v.vhost, true),
        C::TraceOff(v) => vhosts::trace(&ctx, &v.vhost, false),
        C::ListQueues(a) => queues::list_queues(&ctx, &a.vhost.vhost, &a.columns.columns),
        C::ListExchanges(a) => queues::list_exchanges(&ctx, &a.vhost.vhost, &a.columns.columns),
        C::ListBindings(a) => queues::list_bindings(&ctx, &a.vhost.vhost, &a.columns.columns),
        C::PurgeQueue { vhost, queue } => queues::purge_queue(&ctx, &vhost.vhost, &queue),
        C::DeleteQueue { vhost, queue, if_empty, if_unused } => {
            queues::delete_queue(&ctx, &vhost.vhost, &queue, if_empty, if_unused)
        }
        C::ListConnections(c) => clients::list_connections(&ctx, &c.columns),
        C::ListChannels(c) => clients::list_channels(&ctx, &c.columns),
        C::ListConsumers(a) => clients::list_consumers(&ctx, &a.vhost.vhost, &a.columns.columns),
        C::SetPolicy { vhost, name, pattern, definition, priority, apply_to } => {
            policies::set_policy(&ctx, &vhost.vhost, &name, &pattern, &definition, priority, apply_to)
        }
        C::ClearPolicy { vhost, name } => policies::clear_policy(&ctx, &vhost.vhost, &name),
        C::ListPolicies(v) => policies::list_policies(&ctx, &v.vhost),
        C::ExportDefinitions { path } => definitions::export(&ctx, &path),
        C::ImportDefinitions { path } => definitions::import(&ctx, &path),
        C::Status => status::status(&ctx),
        C::ClusterStatus => status::cluster_status(&ctx),
        C::CheckReady => status::check_ready(&ctx),
        C::ForgetClusterNode { node } => status::forget_cluster_node(&ctx, &node),
        C::QuorumStatus { vhost, queue } => quorum::quorum_status(&ctx, &vhost.vhost, &queue),
        C::TransferLeadership { vhost, queue, node } => {
            quorum::transfer_leadership(&ctx, &vhost.vhost, &queue, node.as_deref())
        }
        C::Rebalance { kind } => quorum::rebalance(&ctx, &kind),
        C::Drain => status::drain(&ctx),
        C::CheckIfNodeIsQuorumCritical => status::check_if_node_is_quorum_critical(&ctx),
        C::AwaitOnlineQuorumPlusOne => status::await_online_quorum_plus_one(&ctx),
        C::Revive => status::revive(&ctx),
        C::AddMember { vhost, queue, node } => quorum::add_member(&ctx, &vhost.vhost, &queue, &node),
        C::DeleteMember { vhost, queue, node } => quorum::delete_member(&ctx, &vhost.vhost, &queue, &node),
        C::Grow { node, strategy, vhost_pattern, queue_pattern, errors_only } => {
            quorum::grow(&ctx, &node, &strategy, &vhost_pattern, &queue_pattern, errors_only)
        }
        C::Shrink { node, errors_only } => quorum::shrink(&ctx, &node, errors_only),
        C::SetVmMemoryHighWatermark { value } => status::set_vm_memory_high_watermark(&ctx, &value),
        C::SetDiskFreeLimit { limit } => status::set_disk_free_limit(&ctx, &limit),
    }
}
