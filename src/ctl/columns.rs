//! The columns of the `list_*` commands: rabbitmqctl's info keys (and a few more API fields),
//! each read from the field of the management API's object that holds it. Most keys are the
//! API's field names; the others are mapped (`source_name` is `source`, `queue_name` is
//! `queue.name`, `source_kind` is always `exchange`). Over HTTP there are no Erlang pids: a
//! channel's `pid` is its name, a consumer's `channel_pid` its channel's name.

use super::CtlError;
use super::output::Out;
use serde_json::Value;

/// The columns one `list_*` command accepts.
pub struct Listing {
    pub command: &'static str,
    /// Accepted column names, separated by spaces: rabbitmqctl's (as its help lists them),
    /// then a few more API fields.
    pub keys: &'static str,
    /// Shown when no column is given.
    pub defaults: &'static str,
    /// Keys not kept under their own name: the API's dotted path, or `=` and a constant.
    pub mapped: &'static [(&'static str, &'static str)],
}

pub const QUEUES: Listing = Listing {
    command: "list_queues",
    keys: concat!(
        "arguments auto_delete consumer_capacity consumer_utilisation consumers disk_reads disk_writes ",
        "durable exclusive exclusive_consumer_pid exclusive_consumer_tag head_message_timestamp leader ",
        "members memory message_bytes message_bytes_persistent message_bytes_ram message_bytes_ready ",
        "message_bytes_unacknowledged messages messages_persistent messages_ram messages_ready ",
        "messages_ready_ram messages_unacknowledged messages_unacknowledged_ram name online owner_pid pid ",
        "policy slave_pids state synchronised_slave_pids type vhost node effective_policy_definition ",
        "operator_policy single_active_consumer_tag idle_since",
    ),
    defaults: "name messages",
    mapped: &[("owner_pid", "owner_pid_details.name")],
};

pub const EXCHANGES: Listing = Listing {
    command: "list_exchanges",
    keys: "arguments auto_delete durable internal name policy type vhost",
    defaults: "name type",
    mapped: &[],
};

pub const BINDINGS: Listing = Listing {
    command: "list_bindings",
    keys: concat!(
        "arguments destination_kind destination_name routing_key source_kind source_name source ",
        "destination destination_type properties_key vhost",
    ),
    defaults: "source_name source_kind destination_name destination_kind routing_key arguments",
    mapped: &[
        ("source_name", "source"),
        ("source_kind", "=exchange"),
        ("destination_name", "destination"),
        ("destination_kind", "destination_type"),
    ],
};

pub const CONNECTIONS: Listing = Listing {
    command: "list_connections",
    keys: concat!(
        "auth_mechanism channel_max channels client_properties connected_at frame_max host name ",
        "peer_cert_issuer peer_cert_subject peer_cert_validity peer_host peer_port pid port protocol ",
        "recv_cnt recv_oct send_cnt send_oct send_pend ssl ssl_cipher ssl_hash ssl_key_exchange ",
        "ssl_protocol state timeout user vhost node type user_provided_name",
    ),
    defaults: "user peer_host peer_port state",
    mapped: &[],
};

pub const CHANNELS: Listing = Listing {
    command: "list_channels",
    keys: concat!(
        "acks_uncommitted confirm connection consumer_count global_prefetch_count messages_unacknowledged ",
        "messages_uncommitted messages_unconfirmed name number pid prefetch_count transactional user ",
        "vhost node state",
    ),
    defaults: "pid user consumer_count messages_unacknowledged",
    mapped: &[("connection", "connection_details.name"), ("pid", "name")],
};

pub const CONSUMERS: Listing = Listing {
    command: "list_consumers",
    keys: concat!(
        "ack_required active activity_status arguments channel_pid consumer_tag prefetch_count queue_name ",
        "exclusive",
    ),
    defaults: "queue_name channel_pid consumer_tag ack_required prefetch_count active arguments",
    mapped: &[("queue_name", "queue.name"), ("channel_pid", "channel_details.name")],
};

pub const VHOSTS: Listing = Listing {
    command: "list_vhosts",
    keys: "cluster_state default_queue_type description name tags tracing",
    defaults: "name",
    mapped: &[],
};

pub const USERS: Listing =
    Listing { command: "list_users", keys: "user tags", defaults: "user tags", mapped: &[("user", "name")] };

pub const PERMISSIONS: Listing = Listing {
    command: "list_permissions",
    keys: "user configure write read",
    defaults: "user configure write read",
    mapped: &[],
};

pub const USER_PERMISSIONS: Listing = Listing {
    command: "list_user_permissions",
    keys: "vhost configure write read",
    defaults: "vhost configure write read",
    mapped: &[],
};

pub const POLICIES: Listing = Listing {
    command: "list_policies",
    keys: "vhost name pattern apply-to definition priority",
    defaults: "vhost name pattern apply-to definition priority",
    mapped: &[],
};

impl Listing {
    /// The columns asked for (`name messages` or `name,messages`), or the defaults; an
    /// unknown one is a usage error with rabbitmqctl's text.
    pub fn select(&self, asked: &[String]) -> Result<Vec<String>, CtlError> {
        let asked: Vec<String> = asked
            .iter()
            .flat_map(|a| a.split(','))
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        if asked.is_empty() {
            return Ok(self.defaults.split(' ').map(String::from).collect());
        }
        let mut unknown: Vec<&str> =
            asked.iter().map(String::as_str).filter(|a| !self.keys.split(' ').any(|k| k == *a)).collect();
        if unknown.is_empty() {
            return Ok(asked);
        }
        unknown.sort_unstable();
        unknown.dedup();
        Err(CtlError::Usage {
            command: self.command.to_owned(),
            message: format!("Info key(s) {} are not supported", unknown.join(",")),
        })
    }

    /// The value of `column` in one API object (`Null` when the API has no such field).
    pub fn value(&self, row: &Value, column: &str) -> Value {
        let source = self.mapped.iter().find(|(k, _)| *k == column).map_or(column, |(_, s)| *s);
        if let Some(constant) = source.strip_prefix('=') {
            return Value::String(constant.to_owned());
        }
        source.split('.').try_fold(row, |v, key| v.get(key)).cloned().unwrap_or(Value::Null)
    }

    /// Prints `rows` with the columns asked for (checked before any request is made).
    pub fn show(&self, out: &Out, rows: &[Value], asked: &[String]) -> Result<(), CtlError> {
        let columns = self.select(asked)?;
        out.table(&columns, &self.rows(rows, &columns));
        Ok(())
    }

    /// The table of `rows` for `columns`.
    pub fn rows(&self, rows: &[Value], columns: &[String]) -> Vec<Vec<Value>> {
        rows.iter().map(|r| columns.iter().map(|c| self.value(r, c)).collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_commas_and_unknown_columns() {
        assert_eq!(QUEUES.select(&[]).unwrap(), ["name", "messages"]);
        assert_eq!(
            QUEUES.select(&["name,consumers".into(), "durable".into()]).unwrap(),
            ["name", "consumers", "durable"]
        );
        let e = QUEUES.select(&["name".into(), "foo".into(), "bar".into()]).unwrap_err();
        assert_eq!(e.to_string(), "Info key(s) bar,foo are not supported");
        assert_eq!(e.exit_code(), 64);
    }

    #[test]
    fn defaults_and_mapped_columns_are_accepted() {
        let all = [
            &QUEUES,
            &EXCHANGES,
            &BINDINGS,
            &CONNECTIONS,
            &CHANNELS,
            &CONSUMERS,
            &VHOSTS,
            &USERS,
            &PERMISSIONS,
            &USER_PERMISSIONS,
            &POLICIES,
        ];
        for l in all {
            assert!(l.select(&[l.defaults.replace(' ', ",")]).is_ok(), "{}", l.command);
            for (k, _) in l.mapped {
                assert!(l.select(&[k.to_string()]).is_ok(), "{} {k}", l.command);
            }
        }
    }

    #[test]
    fn mapped_columns() {
        let b = json!({"source": "amq.topic", "destination": "q1", "destination_type": "queue"});
        let cols: Vec<String> = ["source_name", "source_kind", "destination_name", "destination_kind", "arguments"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            BINDINGS.rows(&[b], &cols)[0],
            [json!("amq.topic"), json!("exchange"), json!("q1"), json!("queue"), Value::Null]
        );
        let c = json!({"queue": {"name": "q 2"}, "channel_details": {"name": "ch (1)"}});
        assert_eq!(CONSUMERS.value(&c, "queue_name"), json!("q 2"));
        assert_eq!(CONSUMERS.value(&c, "channel_pid"), json!("ch (1)"));
    }
}
