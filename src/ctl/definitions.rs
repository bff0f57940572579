//! Definitions (users, vhosts, permissions, policies, exchanges, queues, bindings) as JSON:
//! `export_definitions` (`GET /api/definitions`) and `import_definitions`
//! (`POST /api/definitions`). The path `-` is standard output or input.

use super::http::path;
use super::output::print_raw;
use super::{CtlError, Ctx};
use serde_json::Value;
use std::io::Read;

pub fn export(ctx: &Ctx, file: &str) -> Result<(), CtlError> {
    let to_stdout = file == "-";
    if !to_stdout {
        ctx.out.info(&format!("Exporting definitions in JSON to a file at \"{file}\" ..."));
    }
    let defs = ctx.api.get(&path(&["definitions"]))?;
    if !defs.is_object() {
        return Err(super::http::bad("/api/definitions", "expected a JSON object"));
    }
    let text = defs.to_string();
    if to_stdout {
        // As rabbitmqctl: the JSON alone, on one line, without a newline at the end.
        print_raw(&text);
        return Ok(());
    }
    std::fs::write(file, text).map_err(|source| CtlError::Io { path: file.to_owned(), source })
}

pub fn import(ctx: &Ctx, file: &str) -> Result<(), CtlError> {
    let text = read(file)?;
    let defs: Value =
        serde_json::from_str(&text).map_err(|e| CtlError::Data(format!("{file}: not valid JSON: {e}")))?;
    if !defs.is_object() {
        return Err(CtlError::Data(format!("{file}: definitions must be a JSON object")));
    }
    if file == "-" {
        ctx.out.info("Importing definitions in JSON from standard input ...");
    } else {
        ctx.out.info(&format!("Importing definitions in JSON from a file at \"{file}\" ..."));
    }
    ctx.api.post(&path(&["definitions"]), &defs)?;
    ctx.out.info("Successfully started definition import. This process is asynchronous and can take some time.");
    Ok(())
}

fn read(file: &str) -> Result<String, CtlError> {
    let io = |source: std::io::Error| CtlError::Io { path: file.to_owned(), source };
    if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(io)?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CtlError::Data(format!("Bad argument: File {file} does not exist")),
        _ => io(e),
    })
}
