//! Topic matching with a trie over the dot-separated words of binding keys.
//!
//! `*` matches exactly one word and `#` zero or more (AMQP 0-9-1 §3.1.3.3, RabbitMQ's
//! `rabbit_exchange_type_topic`). An empty key has no words; `a..b` has an empty middle word.
//! Matching walks the trie once per routing key instead of testing every binding.

use std::collections::{BTreeMap, BTreeSet};

/// A trie of binding keys; each node holds the destinations whose key ends there, with a
/// count because several bindings (differing only in arguments) may share a key and target.
#[derive(Clone, Debug)]
pub struct TopicTrie<D: Ord + Clone> {
    root: Node<D>,
}

impl<D: Ord + Clone> Default for TopicTrie<D> {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Debug)]
struct Node<D: Ord + Clone> {
    words: BTreeMap<String, Node<D>>,
    star: Option<Box<Node<D>>>,
    hash: Option<Box<Node<D>>>,
    targets: BTreeMap<D, u32>,
}

impl<D: Ord + Clone> Default for Node<D> {
    fn default() -> Self {
        Self { words: BTreeMap::new(), star: None, hash: None, targets: BTreeMap::new() }
    }
}

impl<D: Ord + Clone> Node<D> {
    fn is_empty(&self) -> bool {
        self.words.is_empty() && self.star.is_none() && self.hash.is_none() && self.targets.is_empty()
    }
}

/// Splits a key into words; the empty key has none.
fn words(key: &str) -> Vec<&str> {
    if key.is_empty() { Vec::new() } else { key.split('.').collect() }
}

impl<D: Ord + Clone> TopicTrie<D> {
    pub fn new() -> Self {
        Self { root: Node::default() }
    }

    pub fn insert(&mut self, key: &str, dest: D) {
        let mut node = &mut self.root;
        for w in words(key) {
            node = match w {
                "*" => node.star.get_or_insert_with(Default::default),
                "#" => node.hash.get_or_insert_with(Default::default),
                w => node.words.entry(w.to_owned()).or_default(),
            };
        }
        *node.targets.entry(dest).or_insert(0) += 1;
    }

    /// Removes one binding of `dest` under `key`; prunes empty branches.
    pub fn remove(&mut self, key: &str, dest: &D) {
        fn rec<D: Ord + Clone>(node: &mut Node<D>, ws: &[&str], dest: &D) {
            match ws.split_first() {
                None => {
                    if let Some(n) = node.targets.get_mut(dest) {
                        *n -= 1;
                        if *n == 0 {
                            node.targets.remove(dest);
                        }
                    }
                }
                Some((w, rest)) => {
                    let child = match *w {
                        "*" => node.star.as_deref_mut(),
                        "#" => node.hash.as_deref_mut(),
                        w => node.words.get_mut(w),
                    };
                    let Some(child) = child else { return };
                    rec(child, rest, dest);
                    if child.is_empty() {
                        match *w {
                            "*" => node.star = None,
                            "#" => node.hash = None,
                            w => {
                                node.words.remove(w);
                            }
                        }
                    }
                }
            }
        }
        rec(&mut self.root, &words(key), dest);
    }

    /// Adds every destination whose binding key matches `routing_key` to `out`.
    pub fn matches(&self, routing_key: &str, out: &mut BTreeSet<D>) {
        fn rec<D: Ord + Clone>(node: &Node<D>, ws: &[&str], out: &mut BTreeSet<D>) {
            if let Some(h) = &node.hash {
                // `#` swallows zero or more words.
                for skip in 0..=ws.len() {
                    rec(h, &ws[skip..], out);
                }
            }
            match ws.split_first() {
                None => out.extend(node.targets.keys().cloned()),
                Some((w, rest)) => {
                    if let Some(s) = &node.star {
                        rec(s, rest, out);
                    }
                    if let Some(c) = node.words.get(*w) {
                        rec(c, rest, out);
                    }
                }
            }
        }
        rec(&self.root, &words(routing_key), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        let mut t = TopicTrie::new();
        t.insert(pattern, 1u8);
        let mut out = BTreeSet::new();
        t.matches(key, &mut out);
        out.contains(&1)
    }

    #[test]
    fn wildcard_table() {
        let table: &[(&str, &str, bool)] = &[
            ("a.b.c", "a.b.c", true),
            ("a.b.c", "a.b", false),
            ("a.*", "a.b", true),
            ("a.*", "a", false),
            ("a.*", "a.b.c", false),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("a.#", "b.a", false),
            ("#", "", true),
            ("#", "anything.at.all", true),
            ("*", "", false),
            ("*", "one", true),
            ("*.b.*", "a.b.c", true),
            ("*.b.*", "b.c", false),
            ("#.c", "c", true),
            ("#.c", "a.b.c", true),
            ("#.c", "a.b.cd", false),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.x.y.c", true),
            ("a.#.c", "a.x.y", false),
            ("a.*.#", "a", false),
            ("a.*.#", "a.b", true),
            ("#.#", "x", true),
            ("", "", true),
            ("", "a", false),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
            ("*.*", "a", false),
            ("#.*", "", false),
            ("#.*", "a.b", true),
        ];
        for (p, k, want) in table {
            assert_eq!(matches(p, k), *want, "pattern {p:?} key {k:?}");
        }
    }

    #[test]
    fn remove_prunes_and_counts_duplicates() {
        let mut t = TopicTrie::new();
        t.insert("a.*", 1u8);
        t.insert("a.*", 1u8);
        t.insert("a.#", 2u8);
        t.remove("a.*", &1);
        let mut out = BTreeSet::new();
        t.matches("a.b", &mut out);
        assert_eq!(out, BTreeSet::from([1, 2]));
        t.remove("a.*", &1);
        t.remove("a.#", &2);
        out.clear();
        t.matches("a.b", &mut out);
        assert!(out.is_empty());
        assert!(t.root.is_empty());
    }
}
