//! Bindings and routing: from (exchange, routing keys, headers) to a set of queues.
//!
//! Covers the four exchange types, exchange-to-exchange bindings (cycles are cut and each queue
//! receives one copy), alternate exchanges (followed while nothing matched, loops cut), and
//! sender-selected CC/BCC keys (RabbitMQ's `rabbit_exchange:route/2` and `[D:e2e]`, `[D:ae]`,
//! `[D:sender-selected]`).

use super::exchange::{Destination, ExchangeKind};
use super::headers::{self, XMatch};
use super::topic::TopicTrie;
use amq_protocol::types::FieldTable;
use std::collections::{BTreeMap, BTreeSet};

/// One binding from an exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub destination: Destination,
    pub key: String,
    pub args: FieldTable,
}

/// An exchange's bindings, indexed for its routing algorithm.
#[derive(Clone, Debug, Default)]
pub struct BindingIndex {
    all: Vec<Binding>,
    direct: BTreeMap<String, BTreeMap<Destination, u32>>,
    topic: TopicTrie<Destination>,
    headers: Vec<(XMatch, FieldTable, Destination)>,
}

impl BindingIndex {
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.all.iter()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn contains(&self, b: &Binding) -> bool {
        self.all.contains(b)
    }

    /// Adds a binding; returns false if an identical one exists (binding is idempotent).
    pub fn add(&mut self, kind: ExchangeKind, b: Binding) -> Result<bool, super::Error> {
        if self.contains(&b) {
            return Ok(false);
        }
        match kind {
            ExchangeKind::Direct => {
                *self.direct.entry(b.key.clone()).or_default().entry(b.destination.clone()).or_insert(0) += 1
            }
            ExchangeKind::Topic => self.topic.insert(&b.key, b.destination.clone()),
            ExchangeKind::Headers => {
                self.headers.push((XMatch::from_args(&b.args)?, b.args.clone(), b.destination.clone()))
            }
            ExchangeKind::Fanout => {}
        }
        self.all.push(b);
        Ok(true)
    }

    /// Removes a binding; returns false if there was none.
    pub fn remove(&mut self, kind: ExchangeKind, b: &Binding) -> bool {
        let Some(pos) = self.all.iter().position(|x| x == b) else {
            return false;
        };
        self.all.remove(pos);
        match kind {
            ExchangeKind::Direct => {
                if let Some(m) = self.direct.get_mut(&b.key) {
                    if let Some(n) = m.get_mut(&b.destination) {
                        *n -= 1;
                        if *n == 0 {
                            m.remove(&b.destination);
                        }
                    }
                    if m.is_empty() {
                        self.direct.remove(&b.key);
                    }
                }
            }
            ExchangeKind::Topic => self.topic.remove(&b.key, &b.destination),
            ExchangeKind::Headers => {
                if let Some(i) = self.headers.iter().position(|(_, a, d)| a == &b.args && d == &b.destination) {
                    self.headers.remove(i);
                }
            }
            ExchangeKind::Fanout => {}
        }
        true
    }

    /// Removes every binding to `dest`; returns how many went.
    pub fn remove_destination(&mut self, kind: ExchangeKind, dest: &Destination) -> usize {
        let gone: Vec<Binding> = self.all.iter().filter(|b| &b.destination == dest).cloned().collect();
        for b in &gone {
            self.remove(kind, b);
        }
        gone.len()
    }

    /// Adds the destinations matching one message to `out`.
    fn route(&self, kind: ExchangeKind, keys: &[&str], headers: Option<&FieldTable>, out: &mut BTreeSet<Destination>) {
        match kind {
            ExchangeKind::Fanout => out.extend(self.all.iter().map(|b| b.destination.clone())),
            ExchangeKind::Direct => {
                for k in keys {
                    if let Some(m) = self.direct.get(*k) {
                        out.extend(m.keys().cloned());
                    }
                }
            }
            ExchangeKind::Topic => {
                for k in keys {
                    self.topic.matches(k, out);
                }
            }
            ExchangeKind::Headers => {
                for (mode, args, dest) in &self.headers {
                    if headers::matches(*mode, args, headers) {
                        out.insert(dest.clone());
                    }
                }
            }
        }
    }
}

/// What routing needs to know about an exchange.
pub trait RoutableExchange {
    fn kind(&self) -> ExchangeKind;
    fn bindings(&self) -> &BindingIndex;
    fn alternate(&self) -> Option<&str>;
}

/// Looks exchanges up by name within one vhost.
pub trait ExchangeLookup {
    type Exchange: RoutableExchange;
    fn exchange(&self, name: &str) -> Option<&Self::Exchange>;
    /// Whether a queue of this name exists (the default exchange routes to it directly).
    fn has_queue(&self, name: &str) -> bool;
}

/// Routes one message published to `exchange` with `keys` (the routing key followed by CC and
/// BCC keys). Returns the names of the target queues, each once.
pub fn route<L: ExchangeLookup>(
    view: &L,
    exchange: &str,
    keys: &[&str],
    headers: Option<&FieldTable>,
) -> BTreeSet<String> {
    let mut queues = BTreeSet::new();
    if exchange.is_empty() {
        // The default exchange: every queue is bound under its own name.
        for k in keys {
            if view.has_queue(k) {
                queues.insert((*k).to_owned());
            }
        }
        return queues;
    }
    let mut visited_ae = BTreeSet::new();
    let mut current = exchange.to_owned();
    loop {
        route_through(view, &current, keys, headers, &mut queues);
        if !queues.is_empty() {
            return queues;
        }
        // Nothing matched: try the alternate exchange, unless we have been there already.
        visited_ae.insert(current.clone());
        match view.exchange(&current).and_then(|x| x.alternate()).map(str::to_owned) {
            Some(ae) if !visited_ae.contains(&ae) && view.exchange(&ae).is_some() => current = ae,
            _ => return queues,
        }
    }
}

/// Routes through `start` and every exchange it is bound to, visiting each exchange once.
fn route_through<L: ExchangeLookup>(
    view: &L,
    start: &str,
    keys: &[&str],
    headers: Option<&FieldTable>,
    queues: &mut BTreeSet<String>,
) {
    let mut seen = BTreeSet::from([start.to_owned()]);
    let mut pending = vec![start.to_owned()];
    let mut dests = BTreeSet::new();
    while let Some(name) = pending.pop() {
        let Some(x) = view.exchange(&name) else {
            continue;
        };
        dests.clear();
        x.bindings().route(x.kind(), keys, headers, &mut dests);
        for d in &dests {
            match d {
                Destination::Queue(q) => {
                    queues.insert(q.clone());
                }
                Destination::Exchange(e) => {
                    if seen.insert(e.clone()) {
                        pending.push(e.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct X {
        kind: ExchangeKind,
        b: BindingIndex,
        ae: Option<String>,
    }
    impl RoutableExchange for X {
        fn kind(&self) -> ExchangeKind {
            self.kind
        }
        fn bindings(&self) -> &BindingIndex {
            &self.b
        }
        fn alternate(&self) -> Option<&str> {
            self.ae.as_deref()
        }
    }
    #[derive(Default)]
    struct V(BTreeMap<String, X>, BTreeSet<String>);
    impl ExchangeLookup for V {
        type Exchange = X;
        fn exchange(&self, n: &str) -> Option<&X> {
            self.0.get(n)
        }
        fn has_queue(&self, n: &str) -> bool {
            self.1.contains(n)
        }
    }
    impl V {
        fn x(&mut self, n: &str, kind: ExchangeKind, ae: Option<&str>) {
            self.0.insert(n.into(), X { kind, b: BindingIndex::default(), ae: ae.map(Into::into) });
        }
        fn bind(&mut self, src: &str, d: Destination, key: &str) {
            let x = self.0.get_mut(src).unwrap();
            x.b.add(x.kind, Binding { destination: d, key: key.into(), args: FieldTable::default() }).unwrap();
        }
    }
    fn q(n: &str) -> Destination {
        Destination::Queue(n.into())
    }
    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn e2e_cycles_and_single_copy() {
        let mut v = V::default();
        v.x("a", ExchangeKind::Fanout, None);
        v.x("b", ExchangeKind::Fanout, None);
        v.bind("a", Destination::Exchange("b".into()), "");
        v.bind("b", Destination::Exchange("a".into()), "");
        v.bind("a", q("q1"), "");
        v.bind("b", q("q1"), "");
        v.bind("b", q("q2"), "");
        assert_eq!(route(&v, "a", &["k"], None), set(&["q1", "q2"]));
    }

    #[test]
    fn alternate_exchange_chain_and_loop() {
        let mut v = V::default();
        v.x("main", ExchangeKind::Direct, Some("ae1"));
        v.x("ae1", ExchangeKind::Direct, Some("ae2"));
        v.x("ae2", ExchangeKind::Fanout, Some("main"));
        v.bind("main", q("routed"), "yes");
        assert_eq!(route(&v, "main", &["yes"], None), set(&["routed"]));
        assert!(route(&v, "main", &["no"], None).is_empty());
        v.bind("ae2", q("unrouted"), "");
        assert_eq!(route(&v, "main", &["no"], None), set(&["unrouted"]));
    }

    #[test]
    fn cc_keys_and_default_exchange() {
        let mut v = V::default();
        v.x("d", ExchangeKind::Direct, None);
        v.bind("d", q("q1"), "k1");
        v.bind("d", q("q2"), "k2");
        assert_eq!(route(&v, "d", &["k1", "k2"], None), set(&["q1", "q2"]));
        v.1.insert("hello".into());
        assert_eq!(route(&v, "", &["hello"], None), set(&["hello"]));
        assert!(route(&v, "", &["nope"], None).is_empty());
    }

    #[test]
    fn duplicate_bindings_are_idempotent_and_removable() {
        let mut b = BindingIndex::default();
        let bind = Binding { destination: q("q"), key: "k".into(), args: FieldTable::default() };
        assert!(b.add(ExchangeKind::Direct, bind.clone()).unwrap());
        assert!(!b.add(ExchangeKind::Direct, bind.clone()).unwrap());
        assert_eq!(b.remove_destination(ExchangeKind::Direct, &q("q")), 1);
        let mut out = BTreeSet::new();
        b.route(ExchangeKind::Direct, &["k"], None, &mut out);
        assert!(out.is_empty());
    }
}
