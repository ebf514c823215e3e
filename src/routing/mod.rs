//! The routing engine shared by the brokers that do not route natively (memory, SQLite):
//! an exchange's bindings, and which queues a message reaches.

mod headers;
mod topic;

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::entity::ExchangeType;
use crate::table::FieldTable;

pub(crate) use topic::TopicPattern;

/// Where a binding sends what matches it: a queue, or another exchange (an
/// exchange-to-exchange binding, which routes the message on with the same key and headers).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Destination {
    Queue(Arc<str>),
    Exchange(Arc<str>),
}

impl Destination {
    fn is(&self, other: &Destination) -> bool {
        self == other
    }
}

/// One binding of an exchange to a queue or another exchange.
#[derive(Clone, Debug)]
struct Binding {
    destination: Destination,
    key: Box<str>,
    arguments: FieldTable,
    topic: Option<TopicPattern>,
}

/// The bindings of one exchange, indexed for its exchange type.
#[derive(Clone, Debug)]
pub(crate) struct Bindings {
    kind: ExchangeType,
    all: Vec<Binding>,
    /// Direct exchanges look keys up instead of scanning every binding.
    direct: HashMap<Box<str>, Vec<Destination>>,
    /// How many bindings lead to another exchange (routing looks further only then).
    to_exchanges: usize,
}

impl Bindings {
    pub(crate) fn new(kind: ExchangeType) -> Self {
        Bindings {
            kind,
            all: Vec::new(),
            direct: HashMap::default(),
            to_exchanges: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Adds a binding; binding the same destination, key and arguments twice changes nothing.
    pub(crate) fn bind(&mut self, destination: &Destination, key: &str, arguments: &FieldTable) {
        if self.position(destination, key, arguments).is_some() {
            return;
        }
        self.all.push(Binding {
            destination: destination.clone(),
            key: key.into(),
            arguments: arguments.clone(),
            topic: (self.kind == ExchangeType::Topic).then(|| TopicPattern::new(key)),
        });
        if matches!(destination, Destination::Exchange(_)) {
            self.to_exchanges += 1;
        }
        if self.kind == ExchangeType::Direct {
            let destinations = self.direct.entry(key.into()).or_default();
            if !destinations.iter().any(|d| d.is(destination)) {
                destinations.push(destination.clone());
            }
        }
    }

    /// Removes a binding; returns whether it existed.
    pub(crate) fn unbind(
        &mut self,
        destination: &Destination,
        key: &str,
        arguments: &FieldTable,
    ) -> bool {
        match self.position(destination, key, arguments) {
            Some(i) => {
                let removed = self.all.remove(i);
                if matches!(removed.destination, Destination::Exchange(_)) {
                    self.to_exchanges -= 1;
                }
                self.reindex_direct(key);
                true
            }
            None => false,
        }
    }

    /// Removes every binding to `destination`; returns whether there was one.
    pub(crate) fn remove_destination(&mut self, destination: &Destination) -> bool {
        let before = self.all.len();
        self.all.retain(|b| !b.destination.is(destination));
        let removed = before - self.all.len();
        if removed == 0 {
            return false;
        }
        if matches!(destination, Destination::Exchange(_)) {
            self.to_exchanges -= removed;
        }
        self.direct.retain(|_, destinations| {
            destinations.retain(|d| !d.is(destination));
            !destinations.is_empty()
        });
        true
    }

    fn position(
        &self,
        destination: &Destination,
        key: &str,
        arguments: &FieldTable,
    ) -> Option<usize> {
        self.all.iter().position(|b| {
            b.destination.is(destination) && &*b.key == key && b.arguments == *arguments
        })
    }

    fn reindex_direct(&mut self, key: &str) {
        if self.kind != ExchangeType::Direct {
            return;
        }
        let destinations: Vec<Destination> = self
            .all
            .iter()
            .filter(|b| &*b.key == key)
            .map(|b| b.destination.clone())
            .fold(Vec::new(), |mut acc, d| {
                if !acc.contains(&d) {
                    acc.push(d);
                }
                acc
            });
        if destinations.is_empty() {
            self.direct.remove(key);
        } else {
            self.direct.insert(key.into(), destinations);
        }
    }

    /// Appends to `queues` each queue the message reaches through this exchange's own
    /// bindings, once, and to `exchanges` each exchange it goes on to.
    fn route_one(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        queues: &mut Vec<Arc<str>>,
        exchanges: &mut Vec<Arc<str>>,
    ) {
        let mut push = |d: &Destination| match d {
            Destination::Queue(q) => {
                if !queues.contains(q) {
                    queues.push(q.clone());
                }
            }
            Destination::Exchange(x) => {
                if !exchanges.contains(x) {
                    exchanges.push(x.clone());
                }
            }
        };
        match self.kind {
            ExchangeType::Direct => {
                if let Some(destinations) = self.direct.get(routing_key) {
                    destinations.iter().for_each(push);
                }
            }
            ExchangeType::Fanout => self.all.iter().for_each(|b| push(&b.destination)),
            ExchangeType::Topic => self
                .all
                .iter()
                .filter(|b| b.topic.as_ref().is_some_and(|t| t.matches(routing_key)))
                .for_each(|b| push(&b.destination)),
            ExchangeType::Headers => self
                .all
                .iter()
                .filter(|b| headers::matches(&b.arguments, headers))
                .for_each(|b| push(&b.destination)),
        }
    }

    /// Appends to `out` each queue the message reaches, once, following the bindings to other
    /// exchanges (looked up with `exchange`; a missing one routes nothing) with the same key
    /// and headers, as RabbitMQ does: each exchange is visited once, so a cycle ends and a
    /// queue that several paths lead to gets one copy.
    pub(crate) fn route<'a>(
        &'a self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        exchange: impl Fn(&str) -> Option<&'a Bindings>,
        out: &mut Vec<Arc<str>>,
    ) {
        let mut next = Vec::new();
        self.route_one(routing_key, headers, out, &mut next);
        if next.is_empty() {
            return;
        }
        let mut visited: Vec<Arc<str>> = Vec::new();
        while let Some(name) = next.pop() {
            if visited.contains(&name) {
                continue;
            }
            if let Some(bindings) = exchange(&name) {
                let mut further = Vec::new();
                bindings.route_one(routing_key, headers, out, &mut further);
                next.extend(further.into_iter().filter(|x| !visited.contains(x)));
            }
            visited.push(name);
        }
    }

    /// Every binding: where it leads, its key and its arguments, in the order they were made.
    #[cfg(feature = "serve")]
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Destination, &str, &FieldTable)> {
        self.all
            .iter()
            .map(|b| (&b.destination, &*b.key, &b.arguments))
    }

    /// The exchanges some binding leads to (none for most exchanges).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn exchange_destinations(&self) -> impl Iterator<Item = Arc<str>> + '_ {
        self.all
            .iter()
            .take(if self.to_exchanges > 0 { usize::MAX } else { 0 })
            .filter_map(|b| match &b.destination {
                Destination::Exchange(x) => Some(x.clone()),
                Destination::Queue(_) => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(b: &Bindings, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        b.route(key, None, |_| None, &mut out);
        out.iter().map(|q| q.to_string()).collect()
    }

    fn queue(name: &str) -> Destination {
        Destination::Queue(name.into())
    }

    #[test]
    fn direct_fanout_topic() {
        let (q1, q2) = (queue("q1"), queue("q2"));
        let none = FieldTable::new();
        let mut d = Bindings::new(ExchangeType::Direct);
        d.bind(&q1, "a", &none);
        d.bind(&q2, "a", &none);
        d.bind(&q2, "b", &none);
        assert_eq!(route(&d, "a"), ["q1", "q2"]);
        assert_eq!(route(&d, "b"), ["q2"]);
        assert!(d.unbind(&q2, "a", &none));
        assert_eq!(route(&d, "a"), ["q1"]);
        assert!(d.remove_destination(&q1));
        assert!(route(&d, "a").is_empty());

        let mut f = Bindings::new(ExchangeType::Fanout);
        f.bind(&q1, "x", &none);
        f.bind(&q1, "y", &none);
        f.bind(&q2, "", &none);
        assert_eq!(route(&f, "anything"), ["q1", "q2"], "one copy per queue");

        let mut t = Bindings::new(ExchangeType::Topic);
        t.bind(&q1, "*.stock.#", &none);
        t.bind(&q2, "#", &none);
        assert_eq!(route(&t, "usd.stock"), ["q1", "q2"]);
        assert_eq!(route(&t, "stock.nasdaq"), ["q2"]);
    }

    mod graphs {
        use super::super::*;
        use proptest::prelude::*;

        /// A binding of the random graphs: from exchange `source` to exchange or queue `to`.
        #[derive(Clone, Debug)]
        struct Edge {
            source: usize,
            to_exchange: bool,
            to: usize,
            key: &'static str,
        }

        const KEYS: [&str; 5] = ["a", "b", "a.b", "*", "#"];
        const KINDS: [ExchangeType; 3] = [
            ExchangeType::Direct,
            ExchangeType::Fanout,
            ExchangeType::Topic,
        ];

        fn edge(exchanges: usize, queues: usize) -> impl Strategy<Value = Edge> {
            (
                0..exchanges,
                any::<bool>(),
                0..exchanges.max(queues),
                0..KEYS.len(),
            )
                .prop_map(move |(source, to_exchange, to, key)| Edge {
                    source,
                    to_exchange,
                    to: to % if to_exchange { exchanges } else { queues },
                    key: KEYS[key],
                })
        }

        /// Whether `edge` of an exchange of `kind` matches `key` (the reference matchers).
        fn matches(kind: ExchangeType, edge: &Edge, key: &str) -> bool {
            match kind {
                ExchangeType::Direct => edge.key == key,
                ExchangeType::Fanout => true,
                _ => TopicPattern::new(edge.key).matches(key),
            }
        }

        /// The reference: the exchanges the message reaches are a fixpoint (the start, and
        /// every exchange a matching binding of a reached one leads to); the queues, those a
        /// matching binding of a reached exchange leads to, each once.
        fn reference(kinds: &[ExchangeType], edges: &[Edge], key: &str) -> Vec<String> {
            let mut reached = vec![false; kinds.len()];
            reached[0] = true;
            loop {
                let before = reached.clone();
                for e in edges {
                    if reached[e.source] && e.to_exchange && matches(kinds[e.source], e, key) {
                        reached[e.to] = true;
                    }
                }
                if reached == before {
                    break;
                }
            }
            let mut queues: Vec<String> = edges
                .iter()
                .filter(|e| reached[e.source] && !e.to_exchange && matches(kinds[e.source], e, key))
                .map(|e| format!("q{}", e.to))
                .collect();
            queues.sort();
            queues.dedup();
            queues
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]
            /// Random graphs of up to 5 exchanges (cycles and self-loops included) and 4
            /// queues: a message reaches exactly the queues of the reference, each once.
            #[test]
            fn a_message_reaches_the_queues_of_every_path_once(
                kinds in proptest::collection::vec(0..KINDS.len(), 1..6),
                edges in proptest::collection::vec(edge(5, 4), 0..16),
                key in 0..KEYS.len(),
            ) {
                let kinds: Vec<ExchangeType> = kinds.into_iter().map(|k| KINDS[k]).collect();
                let edges: Vec<Edge> = edges
                    .into_iter()
                    .filter(|e| e.source < kinds.len() && (!e.to_exchange || e.to < kinds.len()))
                    .collect();
                let mut exchanges: Vec<Bindings> = kinds.iter().map(|k| Bindings::new(*k)).collect();
                for e in &edges {
                    let to = if e.to_exchange {
                        Destination::Exchange(format!("x{}", e.to).into())
                    } else {
                        Destination::Queue(format!("q{}", e.to).into())
                    };
                    exchanges[e.source].bind(&to, e.key, &FieldTable::new());
                }
                let key = KEYS[key];
                let mut out = Vec::new();
                exchanges[0].route(
                    key,
                    None,
                    |name| name.strip_prefix('x').and_then(|i| i.parse::<usize>().ok()).and_then(|i| exchanges.get(i)),
                    &mut out,
                );
                let mut got: Vec<String> = out.iter().map(|q| q.to_string()).collect();
                let copies = got.len();
                got.sort();
                got.dedup();
                prop_assert_eq!(copies, got.len(), "a queue got two copies");
                prop_assert_eq!(got, reference(&kinds, &edges, key));
            }
        }
    }
}
