//! Which rule a path meets first, without trying the rules one by one: every rule's patterns in
//! one byte trie, walked once per request.
//!
//! The rule this module keeps: [`PathIndex::first`] answers exactly what trying the rules in order
//! with [`super::Rule::matches`] answers (the unit tests compare the two on random rules and
//! paths). Its cost grows with the path's length, not with the number of rules: a 50-rule policy
//! cost about 108 instructions per rule tried in order.

use http::Method;

use super::Rule;

/// Where a pattern ends in the trie, and what it asks of the rest of the path.
#[derive(Debug, Clone, Copy)]
struct End {
    /// The rule's index: the lowest matching one wins.
    rule: u32,
    /// `prefix/*`: the path may go on, after a `/`. Otherwise it must end here.
    prefix: bool,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// By the next byte of the path.
    children: Vec<(u8, u32)>,
    /// The patterns that end at this node, by rule index.
    ends: Vec<End>,
}

/// The trie of every rule's path patterns. Two of them: `public` rules match the strict path and
/// every other rule the lenient one ([`super::lenient`]), so each is walked with its own path.
#[derive(Debug, Clone)]
pub struct PathIndex {
    public: Trie,
    others: Trie,
}

#[derive(Debug, Clone)]
struct Trie {
    nodes: Vec<Node>,
}

impl Trie {
    fn new() -> Trie {
        Trie {
            nodes: vec![Node::default()],
        }
    }

    fn insert(&mut self, base: &str, end: End) {
        let mut at = 0usize;
        for &b in base.as_bytes() {
            at = match self.nodes[at].children.iter().find(|(c, _)| *c == b) {
                Some(&(_, next)) => next as usize,
                None => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[at].children.push((b, next as u32));
                    next
                }
            };
        }
        let ends = &mut self.nodes[at].ends;
        ends.push(end);
        ends.sort_by_key(|e| e.rule);
    }

    /// The lowest rule index below `best` with a pattern matching `path` and a method list
    /// holding `method`.
    fn first(&self, rules: &[Rule], method: &Method, path: &[u8], mut best: u32) -> u32 {
        let mut at = 0usize;
        let mut i = 0usize;
        loop {
            let node = &self.nodes[at];
            for end in &node.ends {
                if end.rule >= best {
                    break;
                }
                let fits = i == path.len() || (end.prefix && path[i] == b'/');
                if fits && rules[end.rule as usize].allows_method(method) {
                    best = end.rule;
                    break;
                }
            }
            let Some(&b) = path.get(i) else { return best };
            match node.children.iter().find(|(c, _)| *c == b) {
                Some(&(_, next)) => at = next as usize,
                None => return best,
            }
            i += 1;
        }
    }
}

impl PathIndex {
    pub fn new(rules: &[Rule]) -> PathIndex {
        let (mut public, mut others) = (Trie::new(), Trie::new());
        for (i, r) in rules.iter().enumerate() {
            let trie = if r.is_public() { &mut public } else { &mut others };
            for (base, prefix) in r.paths.patterns() {
                trie.insert(base, End { rule: i as u32, prefix });
            }
        }
        PathIndex { public, others }
    }

    /// The index of the first rule that `method` and `path` (strict) or `lenient` (for the rules
    /// that are not `public`) meet, if any.
    pub fn first(&self, rules: &[Rule], method: &Method, path: &str, lenient: &str) -> Option<usize> {
        let best = self.public.first(rules, method, path.as_bytes(), u32::MAX);
        let best = self.others.first(rules, method, lenient.as_bytes(), best);
        (best != u32::MAX).then_some(best as usize)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::policy::{Subject, lenient};
    use crate::routes::PublicPaths;

    fn rule(methods: &[Method], paths: &[String], public: bool) -> Rule {
        Rule {
            methods: (!methods.is_empty()).then(|| methods.to_vec()),
            paths: PublicPaths::parse(paths).unwrap(),
            allow: vec![if public {
                Subject::Public
            } else {
                Subject::Authenticated
            }],
            deny: vec![],
            label: "r".into(),
        }
    }

    /// The rules tried in order, as the index must answer.
    fn in_order(rules: &[Rule], method: &Method, path: &str) -> Option<usize> {
        let lenient = lenient(path);
        rules
            .iter()
            .position(|r| r.matches(method, if r.is_public() { path } else { &lenient }))
    }

    const SEGMENTS: &[&str] = &["a", "ab", "api", "b", "x", "%61", "a;p", ""];
    const METHODS: &[Method] = &[Method::GET, Method::POST, Method::DELETE];

    fn path_of(segments: &[usize]) -> String {
        segments.iter().map(|&s| format!("/{}", SEGMENTS[s])).collect()
    }

    fn pattern() -> impl Strategy<Value = String> {
        (prop::collection::vec(0usize..5, 0..4), any::<bool>()).prop_map(|(segs, prefix)| {
            let base = path_of(&segs);
            match (base.is_empty(), prefix) {
                (true, _) => "/*".to_owned(),
                (false, true) => format!("{base}/*"),
                (false, false) => base,
            }
        })
    }

    fn rules() -> impl Strategy<Value = Vec<Rule>> {
        prop::collection::vec(
            (
                prop::collection::vec(0usize..METHODS.len(), 0..3),
                prop::collection::vec(pattern(), 1..4),
                any::<bool>(),
            )
                .prop_map(|(methods, paths, public)| {
                    let methods: Vec<Method> = methods.into_iter().map(|m| METHODS[m].clone()).collect();
                    rule(&methods, &paths, public)
                }),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn the_index_finds_the_rule_trying_them_in_order_finds(
            rules in rules(),
            segments in prop::collection::vec(0usize..SEGMENTS.len(), 0..5),
            trailing in any::<bool>(),
            method in 0usize..METHODS.len(),
        ) {
            let mut path = path_of(&segments);
            if path.is_empty() || trailing {
                path.push('/');
            }
            let method = &METHODS[method];
            let index = PathIndex::new(&rules);
            prop_assert_eq!(
                index.first(&rules, method, &path, &lenient(&path)),
                in_order(&rules, method, &path),
                "{} {}", method, path
            );
        }
    }

    #[test]
    fn an_extension_method_and_overlapping_patterns_meet_the_first_rule() {
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        let rules = vec![
            rule(&[Method::POST], &["/api/a/*".into()], false),
            rule(std::slice::from_ref(&propfind), &["/api/*".into()], false),
            rule(&[], &["/api/a".into(), "/api/a/b".into()], false),
            rule(&[], &["/*".into()], true),
        ];
        let index = PathIndex::new(&rules);
        let first = |m: &Method, p: &str| index.first(&rules, m, p, &lenient(p));
        assert_eq!(first(&Method::POST, "/api/a/b"), Some(0));
        assert_eq!(first(&propfind, "/api/a/b"), Some(1));
        assert_eq!(first(&Method::GET, "/api/a/b"), Some(2));
        assert_eq!(first(&Method::GET, "/api/a/b/c"), Some(3));
        assert_eq!(first(&Method::GET, "/api/ab"), Some(3));
        assert_eq!(first(&Method::GET, "/"), Some(3));
        assert_eq!(PathIndex::new(&[]).first(&[], &Method::GET, "/", "/"), None);
    }
}
