//! A domain pattern as accepted domains and send connector address spaces are written:
//! `example.com` (that domain), `*.example.com` (it and every subdomain), `*` (any
//! domain; address spaces only). Parsed once here (validation, the router, the SMTP
//! session's relay check) and compared with domains in their routed form
//! (`address::routed_domain`: lower case, A-label, no trailing dot).
use super::validate::is_host_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// `*`
    Any,
    /// `*.parent`: the parent and its subdomains.
    WithSubdomains(String),
    Exact(String),
}

/// How closely a pattern matches a domain; greater is more specific. Exact beats any
/// wildcard, a longer wildcard suffix beats a shorter one, and `*` comes last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Specificity {
    Any,
    Suffix(usize),
    Exact,
}

impl DomainPattern {
    /// `example.com`, `*.example.com`, and `*` when `allow_any`; the error says which
    /// forms are allowed.
    pub fn parse(text: &str, allow_any: bool) -> Result<DomainPattern, String> {
        let forms = if allow_any { "*, example.com or *.example.com" } else { "example.com or *.example.com" };
        let bad = || format!("\"{text}\" is not a domain pattern: write {forms}");
        if text == "*" {
            return if allow_any { Ok(DomainPattern::Any) } else { Err(bad()) };
        }
        let (name, with_subdomains) = match text.strip_prefix("*.") {
            Some(parent) => (parent, true),
            None => (text, false),
        };
        if !is_host_name(name) {
            return Err(bad());
        }
        let name = name.to_ascii_lowercase();
        Ok(if with_subdomains { DomainPattern::WithSubdomains(name) } else { DomainPattern::Exact(name) })
    }

    /// How closely the pattern matches `domain` (routed form), if it does.
    pub fn specificity(&self, domain: &str) -> Option<Specificity> {
        match self {
            DomainPattern::Any => Some(Specificity::Any),
            DomainPattern::WithSubdomains(parent) => {
                let covered = domain == parent
                    || domain.strip_suffix(parent.as_str()).is_some_and(|head| head.len() > 1 && head.ends_with('.'));
                covered.then_some(Specificity::Suffix(parent.len()))
            }
            DomainPattern::Exact(name) => (domain == name).then_some(Specificity::Exact),
        }
    }

    pub fn matches(&self, domain: &str) -> bool {
        self.specificity(domain).is_some()
    }

    /// A pattern of a configuration that may not have been validated: one that does not
    /// parse matches nothing, and says so in the log.
    pub fn parse_or_log(text: &str, allow_any: bool) -> Option<DomainPattern> {
        DomainPattern::parse(text, allow_any)
            .map_err(|e| tracing::warn!(error = %e, "a domain pattern is ignored"))
            .ok()
    }

    /// The one domain an exact pattern names.
    pub fn exact(&self) -> Option<&str> {
        match self {
            DomainPattern::Exact(name) => Some(name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_nothing_else() {
        assert_eq!(DomainPattern::parse("*", true), Ok(DomainPattern::Any));
        assert!(DomainPattern::parse("*", false).unwrap_err().contains("write example.com or *.example.com"));
        assert_eq!(DomainPattern::parse("Corp.Test", false), Ok(DomainPattern::Exact("corp.test".into())));
        assert_eq!(DomainPattern::parse("*.Corp.test", false), Ok(DomainPattern::WithSubdomains("corp.test".into())));
        for bad in ["", "exa mple.com", "*example.com", "a.*.com", "**.x.test", "x.test.", "-x.test", "*."] {
            let err = DomainPattern::parse(bad, true).unwrap_err();
            assert!(err.contains("is not a domain pattern: write *, example.com or *.example.com"), "{bad}: {err}");
        }
    }

    #[test]
    fn matching_and_specificity() {
        let exact = DomainPattern::parse("local.test", false).unwrap();
        let sub = DomainPattern::parse("*.corp.test", false).unwrap();
        let any = DomainPattern::parse("*", true).unwrap();
        assert!(exact.matches("local.test") && !exact.matches("sub.local.test") && !exact.matches("xlocal.test"));
        for ok in ["corp.test", "a.corp.test", "b.a.corp.test"] {
            assert!(sub.matches(ok), "{ok}");
        }
        for no in ["xcorp.test", ".corp.test", "corp.test.example", "[127.0.0.1]"] {
            assert!(!sub.matches(no), "{no}");
        }
        assert!(any.matches("anything.example"));
        let long = DomainPattern::parse("*.a.corp.test", false).unwrap();
        assert!(Specificity::Exact > Specificity::Suffix(200) && Specificity::Suffix(2) > Specificity::Any);
        assert!(long.specificity("b.a.corp.test") > sub.specificity("b.a.corp.test"));
        assert!(sub.specificity("a.corp.test") > any.specificity("a.corp.test"));
        assert_eq!(exact.exact(), Some("local.test"));
        assert_eq!(sub.exact(), None);
    }
}
