//! Headers-exchange matching, as RabbitMQ's `rabbit_exchange_type_headers`.
//!
//! `x-match` = `all` (default), `any`, `all-with-x` or `any-with-x`. Binding arguments whose
//! names start with `x-` take part only in the `-with-x` variants. A binding argument of type
//! void matches on presence alone; otherwise values must be equal (numbers compare by value,
//! as Erlang's `==`).

use amq_protocol::types::{AMQPValue, FieldTable};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

impl XMatch {
    /// Reads `x-match` from binding arguments; an invalid value is a 406 at bind time.
    pub fn from_args(args: &FieldTable) -> Result<Self, super::Error> {
        match args.inner().get("x-match") {
            None => Ok(Self::All),
            Some(AMQPValue::LongString(s)) => Self::parse(&String::from_utf8_lossy(s.as_bytes())),
            Some(AMQPValue::ShortString(s)) => Self::parse(s.as_str()),
            Some(v) => Err(super::Error::precondition(format!(
                "Invalid x-match field type {} (value {}); expected longstr",
                super::argument::type_name(v),
                super::argument::display_value(v)
            ))),
        }
    }

    fn parse(s: &str) -> Result<Self, super::Error> {
        match s {
            "all" => Ok(Self::All),
            "any" => Ok(Self::Any),
            "all-with-x" => Ok(Self::AllWithX),
            "any-with-x" => Ok(Self::AnyWithX),
            other => Err(super::Error::precondition(format!(
                "Invalid x-match field value <<\"{other}\">>; expected all, any, all-with-x, or any-with-x"
            ))),
        }
    }
}

/// A normalised value for equality across AMQP numeric types.
#[derive(Debug, PartialEq)]
enum Norm<'a> {
    Int(i128),
    Float(f64),
    Bytes(&'a [u8]),
    Other(&'a AMQPValue),
}

fn norm(v: &AMQPValue) -> Norm<'_> {
    use AMQPValue::*;
    match v {
        Boolean(b) => Norm::Int(*b as i128 + 1_000_000_000_000), // bools never equal numbers
        ShortShortInt(n) => Norm::Int(*n as i128),
        ShortShortUInt(n) => Norm::Int(*n as i128),
        ShortInt(n) => Norm::Int(*n as i128),
        ShortUInt(n) => Norm::Int(*n as i128),
        LongInt(n) => Norm::Int(*n as i128),
        LongUInt(n) => Norm::Int(*n as i128),
        LongLongInt(n) => Norm::Int(*n as i128),
        Timestamp(n) => Norm::Int(*n as i128),
        Float(f) => norm_float(*f as f64),
        Double(f) => norm_float(*f),
        ShortString(s) => Norm::Bytes(s.as_str().as_bytes()),
        LongString(s) => Norm::Bytes(s.as_bytes()),
        ByteArray(b) => Norm::Bytes(b.as_slice()),
        other => Norm::Other(other),
    }
}

fn norm_float(f: f64) -> Norm<'static> {
    if f.fract() == 0.0 && f.abs() < 1e30 { Norm::Int(f as i128) } else { Norm::Float(f) }
}

pub fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    norm(a) == norm(b)
}

/// Whether a message with `headers` matches a binding with `args` under `mode`.
pub fn matches(mode: XMatch, args: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let with_x = matches!(mode, XMatch::AllWithX | XMatch::AnyWithX);
    let all = matches!(mode, XMatch::All | XMatch::AllWithX);
    let mut any_matched = false;
    for (k, want) in args.inner() {
        let k = k.as_str();
        if k == "x-match" || (!with_x && k.starts_with("x-")) {
            continue;
        }
        let got = headers.and_then(|h| h.inner().get(k));
        let ok = match (want, got) {
            (_, None) => false,
            (AMQPValue::Void, Some(_)) => true,
            (w, Some(g)) => values_equal(w, g),
        };
        if all && !ok {
            return false;
        }
        any_matched |= ok;
    }
    all || any_matched
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    use crate::broker::argument::tests::table;

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
    }

    #[test]
    fn match_table() {
        let bind = table(&[("format", s("pdf")), ("type", s("report"))]);
        let both = table(&[("format", s("pdf")), ("type", s("report"))]);
        let one = table(&[("format", s("pdf")), ("type", s("log"))]);
        let none = table(&[("other", s("x"))]);
        assert!(matches(XMatch::All, &bind, Some(&both)));
        assert!(!matches(XMatch::All, &bind, Some(&one)));
        assert!(matches(XMatch::Any, &bind, Some(&one)));
        assert!(!matches(XMatch::Any, &bind, Some(&none)));
        assert!(!matches(XMatch::Any, &bind, None));
        // An empty binding matches everything under all, nothing under any.
        assert!(matches(XMatch::All, &FieldTable::default(), None));
        assert!(!matches(XMatch::Any, &FieldTable::default(), Some(&both)));
        // x- arguments only count with -with-x.
        let bx = table(&[("x-tenant", s("a"))]);
        let hx = table(&[("x-tenant", s("b"))]);
        assert!(matches(XMatch::All, &bx, Some(&hx)));
        assert!(!matches(XMatch::AllWithX, &bx, Some(&hx)));
        assert!(!matches(XMatch::AnyWithX, &bx, Some(&hx)));
        assert!(matches(XMatch::AnyWithX, &bx, Some(&table(&[("x-tenant", s("a"))]))));
        // Numbers compare by value; void matches presence.
        assert!(matches(
            XMatch::All,
            &table(&[("n", AMQPValue::LongInt(1))]),
            Some(&table(&[("n", AMQPValue::ShortShortUInt(1))]))
        ));
        assert!(matches(XMatch::All, &table(&[("n", AMQPValue::Void)]), Some(&table(&[("n", s("z"))]))));
    }

    #[test]
    fn x_match_parsing() {
        assert_eq!(XMatch::from_args(&table(&[("x-match", s("any-with-x"))])).unwrap(), XMatch::AnyWithX);
        assert!(XMatch::from_args(&table(&[("x-match", s("some"))])).is_err());
    }
}
