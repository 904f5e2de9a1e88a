//! The host names a certificate covers, as a set that answers "does it
//! cover this host?" with two binary searches.
//!
//! The 421 check asks this on every request of a connection with SNI, and
//! the classic workaround for clients without SNI is one fallback
//! certificate that names every host of the farm (thousands of names):
//! scanning its list on each request would cost more than the request.
//! The rules are [`covers`](super::certs::covers)'s: case-insensitive, a
//! trailing dot ignored, `*.example.com` covers exactly one further label.

/// The names of one certificate: exact names, and the parents of its
/// wildcards (`example.com` for `*.example.com`), each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoveredNames {
    exact: Vec<Box<str>>,
    wildcard_parents: Vec<Box<str>>,
}

impl CoveredNames {
    /// The set of `names` (any case, trailing dots allowed).
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let mut set = CoveredNames::default();
        for name in names.iter().map(|n| normalise(n.as_ref())) {
            if let Some(parent) = name.strip_prefix("*.").filter(|p| !p.is_empty()) {
                set.wildcard_parents.push(parent.into());
            }
            set.exact.push(name.into());
        }
        for list in [&mut set.exact, &mut set.wildcard_parents] {
            list.sort_unstable();
            list.dedup();
        }
        set
    }

    /// Whether one of the names serves `host`: equal to it, or a wildcard
    /// whose `*` stands for its first label.
    pub fn covers(&self, host: &str) -> bool {
        let host = normalise(host);
        if host.is_empty() {
            return false;
        }
        let has =
            |list: &[Box<str>], name: &str| list.binary_search_by(|n| (**n).cmp(name)).is_ok();
        if has(&self.exact, &host) {
            return true;
        }
        match host.split_once('.') {
            Some((label, parent)) if !label.is_empty() => has(&self.wildcard_parents, parent),
            _ => false,
        }
    }
}

/// Lower case, surrounding blanks and one trailing dot removed (as
/// `covers` normalises).
fn normalise(host: &str) -> String {
    let host = host.trim();
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::covers;

    /// The set answers as the list does, on every pair of these names and
    /// hosts.
    #[test]
    fn agrees_with_covers() {
        let names = [
            "portal.contoso.test",
            "*.apps.contoso.test",
            "Mixed.Case.Test.",
            "*.",
            "*",
            "*.x",
            "a.*.test",
            "*foo.test",
        ];
        let hosts = [
            "portal.contoso.test",
            "PORTAL.contoso.test.",
            "a.apps.contoso.test",
            "a.b.apps.contoso.test",
            "apps.contoso.test",
            ".apps.contoso.test",
            "xapps.contoso.test",
            "mixed.case.test",
            "a.",
            "a.x",
            "x",
            "*.x",
            "*",
            "a.*.test",
            "b.a.*.test",
            "foo.test",
            "a.foo.test",
            "",
            " ",
            ".",
        ];
        for subset in 0..names.len() {
            let list: Vec<String> = names[subset..].iter().map(|s| s.to_string()).collect();
            let set = CoveredNames::new(&list);
            for host in hosts {
                assert_eq!(set.covers(host), covers(&list, host), "{list:?} {host:?}");
            }
        }
        assert!(!CoveredNames::new::<&str>(&[]).covers("a.test"));
    }

    #[test]
    fn a_fallback_of_thousands_of_names() {
        let names: Vec<String> = (0..5000)
            .map(|i| format!("site{i}.contoso.test"))
            .chain((0..500).map(|i| format!("*.t{i}.apps.test")))
            .collect();
        let set = CoveredNames::new(&names);
        assert!(set.covers("site4999.contoso.test"));
        assert!(set.covers("Site0.Contoso.Test."));
        assert!(!set.covers("site5000.contoso.test"));
        assert!(set.covers("x.t499.apps.test"));
        assert!(!set.covers("y.x.t499.apps.test"));
        assert!(!set.covers("t499.apps.test"));
        assert!(!set.covers("x.t500.apps.test"));
    }
}
