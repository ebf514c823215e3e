//! The routing engine shared by the brokers that do not route natively (memory, SQLite):
//! an exchange's bindings, and which queues a message reaches.

mod headers;
mod topic;

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::entity::ExchangeType;
use crate::table::FieldTable;

pub(crate) use topic::TopicPattern;

/// One binding of a queue to an exchange.
#[derive(Clone, Debug)]
struct Binding {
    queue: Arc<str>,
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
    direct: HashMap<Box<str>, Vec<Arc<str>>>,
}

impl Bindings {
    pub(crate) fn new(kind: ExchangeType) -> Self {
        Bindings {
            kind,
            all: Vec::new(),
            direct: HashMap::default(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Adds a binding; binding the same queue, key and arguments twice changes nothing.
    pub(crate) fn bind(&mut self, queue: &Arc<str>, key: &str, arguments: &FieldTable) {
        if self.position(queue, key, arguments).is_some() {
            return;
        }
        self.all.push(Binding {
            queue: queue.clone(),
            key: key.into(),
            arguments: arguments.clone(),
            topic: (self.kind == ExchangeType::Topic).then(|| TopicPattern::new(key)),
        });
        if self.kind == ExchangeType::Direct {
            let queues = self.direct.entry(key.into()).or_default();
            if !queues.contains(queue) {
                queues.push(queue.clone());
            }
        }
    }

    /// Removes a binding; returns whether it existed.
    pub(crate) fn unbind(&mut self, queue: &str, key: &str, arguments: &FieldTable) -> bool {
        match self.position(queue, key, arguments) {
            Some(i) => {
                self.all.remove(i);
                self.reindex_direct(key);
                true
            }
            None => false,
        }
    }

    /// Removes every binding of `queue`; returns whether there was one.
    pub(crate) fn remove_queue(&mut self, queue: &str) -> bool {
        let before = self.all.len();
        self.all.retain(|b| &*b.queue != queue);
        if self.all.len() == before {
            return false;
        }
        self.direct.retain(|_, queues| {
            queues.retain(|q| &**q != queue);
            !queues.is_empty()
        });
        true
    }

    fn position(&self, queue: &str, key: &str, arguments: &FieldTable) -> Option<usize> {
        self.all
            .iter()
            .position(|b| &*b.queue == queue && &*b.key == key && b.arguments == *arguments)
    }

    fn reindex_direct(&mut self, key: &str) {
        if self.kind != ExchangeType::Direct {
            return;
        }
        let queues: Vec<Arc<str>> = self
            .all
            .iter()
            .filter(|b| &*b.key == key)
            .map(|b| b.queue.clone())
            .fold(Vec::new(), |mut acc, q| {
                if !acc.contains(&q) {
                    acc.push(q);
                }
                acc
            });
        if queues.is_empty() {
            self.direct.remove(key);
        } else {
            self.direct.insert(key.into(), queues);
        }
    }

    /// Appends to `out` each queue the message reaches, once.
    pub(crate) fn route(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut Vec<Arc<str>>,
    ) {
        let mut push = |q: &Arc<str>| {
            if !out.contains(q) {
                out.push(q.clone());
            }
        };
        match self.kind {
            ExchangeType::Direct => {
                if let Some(queues) = self.direct.get(routing_key) {
                    queues.iter().for_each(push);
                }
            }
            ExchangeType::Fanout => self.all.iter().for_each(|b| push(&b.queue)),
            ExchangeType::Topic => self
                .all
                .iter()
                .filter(|b| b.topic.as_ref().is_some_and(|t| t.matches(routing_key)))
                .for_each(|b| push(&b.queue)),
            ExchangeType::Headers => self
                .all
                .iter()
                .filter(|b| headers::matches(&b.arguments, headers))
                .for_each(|b| push(&b.queue)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(b: &Bindings, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        b.route(key, None, &mut out);
        out.iter().map(|q| q.to_string()).collect()
    }

    #[test]
    fn direct_fanout_topic() {
        let (q1, q2): (Arc<str>, Arc<str>) = ("q1".into(), "q2".into());
        let none = FieldTable::new();
        let mut d = Bindings::new(ExchangeType::Direct);
        d.bind(&q1, "a", &none);
        d.bind(&q2, "a", &none);
        d.bind(&q2, "b", &none);
        assert_eq!(route(&d, "a"), ["q1", "q2"]);
        assert_eq!(route(&d, "b"), ["q2"]);
        assert!(d.unbind("q2", "a", &none));
        assert_eq!(route(&d, "a"), ["q1"]);
        assert!(d.remove_queue("q1"));
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
}
