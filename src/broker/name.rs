//! Names of exchanges and queues: reserved prefixes and RabbitMQ's wording about them.

use super::Error;

/// RabbitMQ reserves `amq.` for the broker (`rabbit_channel:check_name/2`).
pub const RESERVED_PREFIX: &str = "amq.";

/// Prefix of server-generated queue names.
pub const SERVER_NAMED_PREFIX: &str = "amq.gen-";

/// Prefix of server-generated consumer tags.
pub const CONSUMER_TAG_PREFIX: &str = "amq.ctag-";

/// The pseudo-queue of direct reply-to.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Rejects client-chosen `amq.*` names: `kind` is `"exchange"` or `"queue"`.
pub fn check_not_reserved(kind: &str, name: &str) -> Result<(), Error> {
    if name.starts_with(RESERVED_PREFIX) {
        return Err(Error::access_refused(format!("{kind} name '{name}' contains reserved prefix 'amq.*'")));
    }
    Ok(())
}

/// The name permissions are checked against: the default exchange is `amq.default`.
pub fn permission_name(exchange: &str) -> &str {
    if exchange.is_empty() { "amq.default" } else { exchange }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_refused_with_rabbitmq_text() {
        let e = check_not_reserved("exchange", "amq.foo").unwrap_err();
        assert_eq!(e.reply_text(), "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'");
        assert!(check_not_reserved("queue", "amqfoo").is_ok());
        assert_eq!(permission_name(""), "amq.default");
    }
}
