//! The `SERVICE_*` keys of one workload, indexed the way the conventions
//! look them up: labels (or annotations) beat env vars for the same key, and
//! a port-specific key (`SERVICE_80_NAME`) beats the generic one
//! (`SERVICE_NAME`). Keys are matched case-insensitively after the prefix,
//! as registrator does, and empty values count as unset.

use std::collections::BTreeMap;

use super::Warning;

/// One value and the key it came from, so a warning can name it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub key: String,
    pub value: String,
}

/// The parsed keys: generic ones and per-port ones, by lowercase name
/// (`name`, `tags`, `check_http`, `region`).
#[derive(Debug, Default)]
pub struct Keys {
    generic: BTreeMap<String, Value>,
    per_port: BTreeMap<u16, BTreeMap<String, Value>>,
}

const PREFIX: &str = "SERVICE_";

impl Keys {
    /// Indexes `env` then `metadata` (labels or annotations, which overwrite), reporting keys
    /// that name an impossible port.
    pub fn parse<'a>(
        env: impl IntoIterator<Item = (&'a String, &'a String)>,
        metadata: impl IntoIterator<Item = (&'a String, &'a String)>,
        warnings: &mut Vec<Warning>,
    ) -> Self {
        let mut keys = Keys::default();
        for (k, v) in env.into_iter().chain(metadata) {
            keys.insert(k, v, warnings);
        }
        keys
    }

    fn insert(&mut self, key: &str, value: &str, warnings: &mut Vec<Warning>) {
        let Some(rest) = key.strip_prefix(PREFIX) else { return };
        if value.is_empty() || rest.is_empty() {
            return;
        }
        let v = Value { key: key.to_string(), value: value.to_string() };
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            let (port, name) = rest.split_once('_').unwrap_or((rest, ""));
            match (port.parse::<u16>(), name.is_empty()) {
                (Ok(p), false) if p != 0 => {
                    self.per_port.entry(p).or_default().insert(name.to_ascii_lowercase(), v);
                }
                _ => warnings.push(Warning::new(key, value, "not SERVICE_<port 1-65535>_<KEY>")),
            }
        } else {
            self.generic.insert(rest.to_ascii_lowercase(), v);
        }
    }

    /// The value for `name` (lowercase) on `port`: port-specific first.
    pub fn get(&self, port: u16, name: &str) -> Option<&Value> {
        self.port_only(port, name).or_else(|| self.generic.get(name))
    }

    /// Only the generic value (`SERVICE_<name>`).
    pub fn generic(&self, name: &str) -> Option<&Value> {
        self.generic.get(name)
    }

    /// Only the port-specific value (`SERVICE_<port>_<name>`).
    pub fn port_only(&self, port: u16, name: &str) -> Option<&Value> {
        self.per_port.get(&port).and_then(|m| m.get(name))
    }

    /// Every key that applies to `port`, port-specific ones replacing
    /// generic ones of the same name, in name order.
    pub fn all_for(&self, port: u16) -> BTreeMap<&str, &Value> {
        let mut out: BTreeMap<&str, &Value> = self.generic.iter().map(|(k, v)| (k.as_str(), v)).collect();
        if let Some(m) = self.per_port.get(&port) {
            out.extend(m.iter().map(|(k, v)| (k.as_str(), v)));
        }
        out
    }
}

/// A yes/no value: `SERVICE_IGNORE=true`, `SERVICE_CHECK_TCP=1`. Anything
/// but an explicit no is a yes, as registrator treats any non-empty value.
pub fn truthy(v: &str) -> bool {
    !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "false" | "0" | "no" | "off")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn keys(env: &[(&str, &str)], labels: &[(&str, &str)]) -> (Keys, Vec<Warning>) {
        let (env, labels) = (map(env), map(labels));
        let mut w = vec![];
        (Keys::parse(&env, &labels, &mut w), w)
    }

    #[test]
    fn label_beats_env_for_the_same_key() {
        let (k, _) = keys(&[("SERVICE_NAME", "from-env")], &[("SERVICE_NAME", "from-label")]);
        assert_eq!(k.get(80, "name").unwrap().value, "from-label");
    }

    #[test]
    fn port_specific_beats_generic_even_from_env() {
        let (k, _) = keys(&[("SERVICE_80_NAME", "web")], &[("SERVICE_NAME", "generic")]);
        assert_eq!(k.get(80, "name").unwrap().value, "web");
        assert_eq!(k.get(81, "name").unwrap().value, "generic");
        assert!(k.port_only(81, "name").is_none());
    }

    #[test]
    fn names_are_case_insensitive_after_the_prefix() {
        let (k, _) = keys(&[("SERVICE_Check_Http", "/h")], &[]);
        assert_eq!(k.get(1, "check_http").unwrap().key, "SERVICE_Check_Http");
    }

    #[test]
    fn other_variables_and_empty_values_are_ignored() {
        let (k, w) = keys(&[("PATH", "/bin"), ("SERVICE_NAME", ""), ("SERVICE_", "x"), ("service_name", "y")], &[]);
        assert!(k.get(80, "name").is_none());
        assert!(k.all_for(80).is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn impossible_ports_warn_and_are_skipped() {
        let (k, w) = keys(&[("SERVICE_99999_NAME", "x"), ("SERVICE_0_NAME", "y"), ("SERVICE_80", "z")], &[]);
        assert!(k.all_for(80).is_empty());
        assert_eq!(w.len(), 3);
        assert!(w.iter().any(|w| w.key == "SERVICE_99999_NAME"));
    }

    #[test]
    fn all_for_merges_with_port_override() {
        let (k, _) = keys(&[("SERVICE_REGION", "eu"), ("SERVICE_TEAM", "a"), ("SERVICE_80_REGION", "us")], &[]);
        let all = k.all_for(80);
        assert_eq!(all["region"].value, "us");
        assert_eq!(all["team"].value, "a");
        assert_eq!(k.all_for(81)["region"].value, "eu");
    }

    #[test]
    fn truthiness() {
        for yes in ["true", "1", "yes", "TRUE", "anything"] {
            assert!(truthy(yes), "{yes}");
        }
        for no in ["false", "0", "no", "off", "False", ""] {
            assert!(!truthy(no), "{no}");
        }
    }
}
