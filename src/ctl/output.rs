//! What `warren ctl` prints, as rabbitmqctl 3.10: an informational line (`Listing queues for
//! vhost / ...`; dropped by `-q`), then a tab-separated header row (dropped by `-s` and
//! `--no-table-headers`, and when there are no rows) and one row per object; or, with
//! `--formatter json`, an array of objects with the columns as keys and no informational line.

use serde_json::Value;
use std::io::{IsTerminal, Write};

/// `--formatter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Formatter {
    Table,
    Json,
}

/// The output settings of one invocation.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub quiet: bool,
    pub silent: bool,
    pub no_headers: bool,
    pub formatter: Formatter,
}

impl Out {
    /// Prints an informational line unless `-q`, `-s` or `--formatter json`.
    pub fn info(&self, line: &str) {
        if !self.quiet && !self.silent && self.formatter == Formatter::Table {
            println!("{line}");
        }
    }

    /// Prints a table: `columns` are the names shown, `rows` their values.
    pub fn table(&self, columns: &[String], rows: &[Vec<Value>]) {
        let mut out = String::new();
        match self.formatter {
            Formatter::Json => {
                out.push('[');
                for (i, row) in rows.iter().enumerate() {
                    out.push_str(if i == 0 { "\n{" } else { "\n,{" });
                    for (j, (c, v)) in columns.iter().zip(row).enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        out.push_str(&Value::String(c.clone()).to_string());
                        out.push(':');
                        out.push_str(&v.to_string());
                    }
                    out.push('}');
                }
                out.push_str(if rows.is_empty() { "]\n" } else { "\n]\n" });
            }
            Formatter::Table => {
                if !rows.is_empty() && !self.silent && !self.no_headers {
                    out.push_str(&columns.join("\t"));
                    out.push('\n');
                }
                for row in rows {
                    let cells: Vec<String> = columns.iter().zip(row).map(|(c, v)| cell(c, v)).collect();
                    out.push_str(&cells.join("\t"));
                    out.push('\n');
                }
            }
        }
        print_raw(&out);
    }
}

/// One table cell: strings plain, booleans and numbers as JSON, nothing as an empty cell, a
/// `tags` list as rabbitmqctl prints it (`[administrator, monitoring]`), any other array or
/// object as compact JSON.
pub fn cell(column: &str, v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if column == "tags" => {
            let items: Vec<String> = items.iter().map(|t| cell("", t)).collect();
            format!("[{}]", items.join(", "))
        }
        v => v.to_string(),
    }
}

/// Writes text to standard output, ignoring a closed pipe (`warren ctl list_queues | head`).
pub fn print_raw(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// A section title of `status` and `cluster_status` (bold on a terminal, as rabbitmqctl).
pub fn section(title: &str) -> String {
    if std::io::stdout().is_terminal() { format!("\x1b[1m{title}\x1b[0m\n\n") } else { format!("{title}\n\n") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells() {
        assert_eq!(cell("name", &json!("q1")), "q1");
        assert_eq!(cell("durable", &json!(true)), "true");
        assert_eq!(cell("messages", &json!(3)), "3");
        assert_eq!(cell("policy", &Value::Null), "");
        assert_eq!(cell("tags", &json!(["a", "b"])), "[a, b]");
        assert_eq!(cell("tags", &json!([])), "[]");
        assert_eq!(cell("arguments", &json!({"x-max-length": 10})), r#"{"x-max-length":10}"#);
    }
}
