//! How snigate compares host names, wherever they come from (SNI, `Host`,
//! `hosts` and certificate `names` in the configuration, IIS bindings):
//! ASCII lower case (DNS names compare case-insensitively) and without the
//! trailing dot of a fully qualified name (`a.test.` is `a.test`).

/// `name` as snigate compares it.
pub fn host_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn lower_case_without_trailing_dots() {
        assert_eq!(host_name("Portal.Contoso.TEST."), "portal.contoso.test");
        assert_eq!(host_name("a.test.."), "a.test");
        assert_eq!(host_name("*.A.test"), "*.a.test");
        assert_eq!(host_name(""), "");
    }
}
