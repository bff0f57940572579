//! What clients have open: `list_connections`, `list_channels`, `list_consumers`.

use super::columns::{CHANNELS, CONNECTIONS, CONSUMERS};
use super::http::path;
use super::queues::listing;
use super::{CtlError, Ctx};

pub fn list_connections(ctx: &Ctx, asked: &[String]) -> Result<(), CtlError> {
    CONNECTIONS.select(asked)?;
    ctx.out.info("Listing connections ...");
    let rows = ctx.api.list(&path(&["connections"]))?;
    CONNECTIONS.show(&ctx.out, &rows, asked)
}

pub fn list_channels(ctx: &Ctx, asked: &[String]) -> Result<(), CtlError> {
    CHANNELS.select(asked)?;
    ctx.out.info("Listing channels ...");
    let rows = ctx.api.list(&path(&["channels"]))?;
    CHANNELS.show(&ctx.out, &rows, asked)
}

pub fn list_consumers(ctx: &Ctx, vhost: &str, asked: &[String]) -> Result<(), CtlError> {
    listing(ctx, &CONSUMERS, "consumers", vhost, asked, &format!("Listing consumers in vhost {vhost} ..."))
}
