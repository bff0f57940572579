//! `status` (from `/api/overview` and `/api/nodes/{node}`) and `cluster_status` (from
//! `/api/nodes`, `/api/cluster-name`, `/api/overview`): rabbitmqctl's sections, with the
//! lines whose facts the management API carries (a field the node does not report is left
//! out rather than guessed).

use super::http::path;
use super::output::{Formatter, print_raw, section};
use super::{CtlError, Ctx};
use serde_json::{Map, Value, json};
use std::fmt::Write;

type Obj = Map<String, Value>;

fn text(o: &Obj, key: &str) -> Option<String> {
    match o.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    }
}

/// Bytes as rabbitmqctl shows them: gigabytes with at most four decimals (`0.05 gb`).
fn gb(o: &Obj, key: &str) -> Option<String> {
    let g = (o.get(key)?.as_f64()? / 1e9 * 1e4).round() / 1e4;
    Some(if g.fract() == 0.0 { format!("{g:.1} gb") } else { format!("{g} gb") })
}

fn list(o: &Obj, key: &str) -> Vec<String> {
    let items = o.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect()
}

/// The node is Warren (not RabbitMQ): its lines say what Warren has (no AMQP 1.0, no Erlang).
fn is_warren(overview: &Obj) -> bool {
    text(overview, "product_name").as_deref() == Some("Warren")
}

/// rabbitmqctl's purpose of a listener; Warren's AMQP listener speaks AMQP 0-9-1 only.
fn purpose(protocol: &str, warren: bool) -> &str {
    match protocol {
        "amqp" if warren => "AMQP 0-9-1",
        "amqp/ssl" if warren => "AMQP 0-9-1 over TLS",
        "amqp" => "AMQP 0-9-1 and AMQP 1.0",
        "amqp/ssl" => "AMQP 0-9-1 and AMQP 1.0 over TLS",
        "clustering" => "inter-node and CLI tool communication",
        "http" => "HTTP API",
        "https" => "HTTP API over TLS (HTTPS)",
        "http/prometheus" => "Prometheus exporter API over HTTP",
        other => other,
    }
}

/// `Interface: [::], port: 5672, protocol: amqp, purpose: ...` for each listener.
fn listeners(overview: &Obj, with_node: bool) -> String {
    let mut s = String::new();
    let warren = is_warren(overview);
    for l in overview.get("listeners").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let Some(l) = l.as_object() else { continue };
        let ip = text(l, "ip_address").unwrap_or_default();
        let ip = if ip.contains(':') { format!("[{ip}]") } else { ip };
        let protocol = text(l, "protocol").unwrap_or_default();
        let port = text(l, "port").unwrap_or_default();
        let rest = format!("port: {port}, protocol: {protocol}, purpose: {}", purpose(&protocol, warren));
        let _ = if with_node {
            writeln!(s, "Node: {}, interface: {ip}, {rest}", text(l, "node").unwrap_or_default())
        } else {
            writeln!(s, "Interface: {ip}, {rest}")
        };
    }
    s
}

fn alarms(nodes: &[&Obj]) -> String {
    let mut s = String::new();
    for n in nodes {
        let name = text(n, "name").unwrap_or_default();
        if n.get("mem_alarm") == Some(&Value::Bool(true)) {
            let _ = writeln!(s, "Memory alarm on node {name}");
        }
        if n.get("disk_free_alarm") == Some(&Value::Bool(true)) {
            let _ = writeln!(s, "Free disk space alarm on node {name}");
        }
    }
    if s.is_empty() { "(none)\n".into() } else { s }
}

/// Appends `label: value` when the value is known.
fn line(s: &mut String, label: &str, value: Option<String>) {
    if let Some(v) = value {
        let _ = writeln!(s, "{label}: {v}");
    }
}

fn bullets(s: &mut String, items: &[String]) {
    for i in items {
        let _ = writeln!(s, " * {i}");
    }
}

pub fn status(ctx: &Ctx) -> Result<(), CtlError> {
    let overview = ctx.api.object(&path(&["overview"]))?;
    let node_name = text(&overview, "node").unwrap_or_default();
    let n = ctx.api.object(&path(&["nodes", &node_name]))?;
    if ctx.out.formatter == Formatter::Json {
        print_raw(&format!("{}\n", Value::Object(n)));
        return Ok(());
    }
    let vhosts = ctx.api.list(&path(&["vhosts"]))?.len();
    ctx.out.info(&format!("Status of node {node_name} ..."));
    let totals = overview.get("object_totals").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut s = section("Runtime");
    line(&mut s, "OS PID", text(&n, "os_pid"));
    line(&mut s, "Uptime (seconds)", n.get("uptime").and_then(Value::as_u64).map(|ms| (ms / 1000).to_string()));
    line(&mut s, "RabbitMQ version", text(&overview, "rabbitmq_version"));
    if text(&overview, "product_name").is_some_and(|p| p != "RabbitMQ") {
        line(&mut s, "Product name", text(&overview, "product_name"));
        line(&mut s, "Product version", text(&overview, "product_version"));
    }
    line(&mut s, "Node name", Some(node_name.clone()));
    line(&mut s, "Erlang configuration", text(&overview, "erlang_full_version"));
    if is_warren(&overview) {
        // Warren reports its OS threads where RabbitMQ reports Erlang processes.
        line(&mut s, "OS threads", text(&n, "proc_used"));
    } else if let (Some(used), Some(limit)) = (text(&n, "proc_used"), text(&n, "proc_total")) {
        line(&mut s, "Erlang processes", Some(format!("{used} used, {limit} limit")));
    }
    line(&mut s, "Scheduler run queue", text(&n, "run_queue"));
    line(&mut s, "Cluster heartbeat timeout (net_ticktime)", text(&n, "net_ticktime"));
    s.push('\n');
    let plugins = list(&n, "enabled_plugins");
    if !plugins.is_empty() {
        s.push_str(&section("Plugins"));
        s.push_str("Enabled plugins:\n\n");
        bullets(&mut s, &plugins);
        s.push('\n');
    }
    if let Some(dir) = text(&n, "db_dir") {
        s.push_str(&section("Data directory"));
        let _ = writeln!(s, "Node data directory: {dir}\n");
    }
    for (title, key) in [("Config files", "config_files"), ("Log file(s)", "log_files")] {
        let files = list(&n, key);
        if !files.is_empty() {
            s.push_str(&section(title));
            bullets(&mut s, &files);
            s.push('\n');
        }
    }
    s.push_str(&section("Alarms"));
    s.push_str(&alarms(&[&n]));
    s.push('\n');
    s.push_str(&section("Memory"));
    line(&mut s, "Total memory used", gb(&n, "mem_used"));
    line(&mut s, "Calculation strategy", text(&n, "mem_calculation_strategy"));
    line(&mut s, "Memory high watermark", gb(&n, "mem_limit"));
    s.push('\n');
    s.push_str(&section("File Descriptors"));
    if let (Some(used), Some(limit)) = (text(&n, "fd_used"), text(&n, "fd_total")) {
        let _ = writeln!(s, "Total: {used}, limit: {limit}");
    }
    if let (Some(used), Some(limit)) = (text(&n, "sockets_used"), text(&n, "sockets_total")) {
        let _ = writeln!(s, "Sockets: {used}, limit: {limit}");
    }
    s.push('\n');
    s.push_str(&section("Free Disk Space"));
    line(&mut s, "Low free disk space watermark", gb(&n, "disk_free_limit"));
    line(&mut s, "Free disk space", gb(&n, "disk_free"));
    s.push('\n');
    s.push_str(&section("Totals"));
    line(&mut s, "Connection count", text(&totals, "connections"));
    line(&mut s, "Queue count", text(&totals, "queues"));
    line(&mut s, "Virtual host count", Some(vhosts.to_string()));
    s.push('\n');
    s.push_str(&section("Listeners"));
    s.push_str(&listeners(&overview, false));
    print_raw(&s);
    Ok(())
}

/// `forget_cluster_node NODE`, in rabbitmqctl's words.
pub fn forget_cluster_node(ctx: &Ctx, node: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Removing node {node} from the cluster"));
    ctx.api.delete(&path(&["nodes", node]))
}

/// `drain`: maintenance mode on the node the API address names.
pub fn drain(ctx: &Ctx) -> Result<(), CtlError> {
    ctx.out.info(&format!("Will put node {} into maintenance mode ...", ctx.api.base()));
    let d = ctx.api.call("POST", &path(&["node", "drain"]), Some(&json!({})))?;
    ctx.out.info(&format!(
        "Node is in maintenance mode: {} leaderships handed over, {} client connections closed",
        d["leaderships_moved"], d["connections_closed"]
    ));
    Ok(())
}

/// `revive`: out of maintenance mode.
pub fn revive(ctx: &Ctx) -> Result<(), CtlError> {
    ctx.out.info(&format!("Will take node {} out of maintenance mode ...", ctx.api.base()));
    ctx.api.call("POST", &path(&["node", "revive"]), Some(&json!({})))?;
    Ok(())
}

/// `set_vm_memory_high_watermark <fraction>` or `set_vm_memory_high_watermark absolute <size>`.
pub fn set_vm_memory_high_watermark(ctx: &Ctx, value: &[String]) -> Result<(), CtlError> {
    let body = match value {
        [abs, size] if abs == "absolute" => json!({ "vm_memory_high_watermark_bytes": size_bytes(size)? }),
        [fraction] => match fraction.parse::<f64>() {
            Ok(f) if f > 0.0 && f <= 1.0 => json!({ "vm_memory_high_watermark": f }),
            _ => {
                return Err(usage(
                    "set_vm_memory_high_watermark",
                    format!("'{fraction}' is not a fraction of RAM in (0, 1]"),
                ));
            }
        },
        _ => return Err(usage("set_vm_memory_high_watermark", "expected <fraction> or absolute <size>".into())),
    };
    set_limits(ctx, &body, "Setting memory threshold")
}

/// `set_disk_free_limit <size>`.
pub fn set_disk_free_limit(ctx: &Ctx, limit: &str) -> Result<(), CtlError> {
    set_limits(ctx, &json!({ "disk_free_limit": size_bytes(limit)? }), "Setting disk free limit")
}

fn usage(command: &str, message: String) -> CtlError {
    CtlError::Usage { command: command.into(), message }
}

fn set_limits(ctx: &Ctx, body: &Value, what: &str) -> Result<(), CtlError> {
    let overview = ctx.api.object(&path(&["overview"]))?;
    let node = text(&overview, "node").unwrap_or_default();
    ctx.out.info(&format!("{what} on {node} ..."));
    ctx.api.put(&path(&["nodes", &node, "limits"]), body)
}

/// A size as rabbitmqctl takes it: bytes, or a number with a unit (k/kiB, M/MiB, G/GiB are
/// powers of 1024; kB, MB, GB of 1000).
fn size_bytes(s: &str) -> Result<u64, CtlError> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let scale: u64 = match unit {
        "" => 1,
        "k" | "K" | "kiB" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(usage("size", format!("'{s}': unknown unit '{unit}'"))),
    };
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| usage("size", format!("'{s}' is not a size in bytes")))
}

/// The node's readiness: an error (exit 69, with the node's reason) unless it serves clients
/// as part of a majority.
pub fn check_ready(ctx: &Ctx) -> Result<(), CtlError> {
    ctx.api.get(&path(&["health", "checks", "ready-to-serve-clients"]))?;
    ctx.out.info("Node is ready to serve clients");
    Ok(())
}

/// `check_if_node_is_quorum_critical`: fails (listing them) while stopping this node would
/// leave quorum queues without a majority.
pub fn check_if_node_is_quorum_critical(ctx: &Ctx) -> Result<(), CtlError> {
    ctx.api.get(&path(&["health", "checks", "node-is-quorum-critical"]))?;
    ctx.out.info("Node is not quorum critical");
    Ok(())
}

/// `await_online_quorum_plus_one` (RabbitMQ's pre-stop hook): waits until stopping this node
/// leaves every quorum queue it holds a replica of with a majority online.
pub fn await_online_quorum_plus_one(ctx: &Ctx) -> Result<(), CtlError> {
    ctx.out.info("Will wait for a quorum + 1 of nodes to be online for all quorum queues ...");
    let deadline = std::time::Instant::now() + ctx.timeout;
    loop {
        match ctx.api.get(&path(&["health", "checks", "node-is-quorum-critical"])) {
            Ok(_) => return Ok(()),
            Err(CtlError::Api { status: 503, .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

pub fn cluster_status(ctx: &Ctx) -> Result<(), CtlError> {
    let overview = ctx.api.object(&path(&["overview"]))?;
    let nodes = ctx.api.list(&path(&["nodes"]))?;
    let cluster = ctx.api.object(&path(&["cluster-name"]))?;
    let nodes: Vec<&Obj> = nodes.iter().filter_map(Value::as_object).collect();
    let cluster_name = text(&cluster, "name").unwrap_or_default();
    if ctx.out.formatter == Formatter::Json {
        print_raw(&format!("{}\n", json!({ "cluster_name": cluster_name, "nodes": nodes })));
        return Ok(());
    }
    let node_name = text(&overview, "node").unwrap_or_default();
    ctx.out.info(&format!("Cluster status of node {node_name} ..."));
    let names = |f: &dyn Fn(&Obj) -> bool| -> Vec<String> {
        nodes.iter().filter(|n| f(n)).filter_map(|n| text(n, "name")).collect()
    };
    let mut s = section("Basics");
    let _ = writeln!(s, "Cluster name: {cluster_name}\n");
    for (title, kind) in [("Disk Nodes", "disc"), ("RAM Nodes", "ram")] {
        let members = names(&|n| n.get("type").and_then(Value::as_str) == Some(kind));
        if !members.is_empty() {
            s.push_str(&section(title));
            let _ = writeln!(s, "{}\n", members.join("\n"));
        }
    }
    s.push_str(&section("Running Nodes"));
    let _ = writeln!(s, "{}\n", names(&|n| n.get("running") != Some(&Value::Bool(false))).join("\n"));
    s.push_str(&section("Versions"));
    let product = text(&overview, "product_name").unwrap_or_else(|| "RabbitMQ".into());
    let version = text(&overview, "product_version").or_else(|| text(&overview, "rabbitmq_version"));
    let version = version.unwrap_or_default();
    if is_warren(&overview) {
        let _ = writeln!(s, "{node_name}: {product} {version}\n");
    } else {
        let erlang = text(&overview, "erlang_version").unwrap_or_default();
        let _ = writeln!(s, "{node_name}: {product} {version} on Erlang {erlang}\n");
    }
    s.push_str(&section("Alarms"));
    s.push_str(&alarms(&nodes));
    s.push('\n');
    s.push_str(&section("Network Partitions"));
    let mut partitions = String::new();
    for n in &nodes {
        for other in list(n, "partitions") {
            let _ =
                writeln!(partitions, "Node {} cannot communicate with {other}", text(n, "name").unwrap_or_default());
        }
    }
    s.push_str(if partitions.is_empty() { "(none)\n" } else { &partitions });
    s.push('\n');
    s.push_str(&section("Listeners"));
    s.push_str(&listeners(&overview, true));
    if let Some(Value::Array(flags)) = ctx.api.get_opt(&path(&["feature-flags"]))? {
        s.push('\n');
        s.push_str(&section("Feature flags"));
        for f in flags.iter().filter_map(Value::as_object) {
            let _ = writeln!(
                s,
                "Flag: {}, state: {}",
                text(f, "name").unwrap_or_default(),
                text(f, "state").unwrap_or_default()
            );
        }
    }
    print_raw(&s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::size_bytes;

    #[test]
    fn sizes_take_rabbitmqctl_units() {
        assert_eq!(size_bytes("1000").unwrap(), 1000);
        assert_eq!(size_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(size_bytes("50MB").unwrap(), 50_000_000);
        assert_eq!(size_bytes("512M").unwrap(), 512 << 20);
        assert!(size_bytes("12XB").is_err());
        assert!(size_bytes("MB").is_err());
    }
}
