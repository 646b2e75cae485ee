//! The steps that take one workload's registrations from `old` to `new`
//! after a source event, without listing the agent: the fast path that gets
//! a container start into Consul with a single PUT. The full [`diff`]
//! (super::diff) catches anything this path could not apply.

use consul::ServiceRegistration;

use crate::conventions::health_check_id;

/// One call to make on the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// New or changed: (re-)register.
    Register(ServiceRegistration),
    /// Same registration, health signal flipped: report the owned TTL check.
    Health { service_id: String, passing: bool },
    /// No longer wanted.
    Deregister(String),
}

/// Whether the registrar-owned health check of `reg` should pass; `None`
/// without a health signal.
pub fn health_passing(reg: &ServiceRegistration) -> Option<bool> {
    let id = health_check_id(&reg.id);
    reg.checks.iter().find(|c| c.check_id == id).map(|c| c.status == "passing")
}

/// Registrations first (a renamed container is in Consul under its new ID
/// before the old one goes), then removals.
pub fn steps(old: &[ServiceRegistration], new: &[ServiceRegistration]) -> Vec<Step> {
    let mut steps = Vec::new();
    for reg in new {
        match old.iter().find(|o| o.id == reg.id) {
            // The fingerprint in meta covers everything but check statuses.
            Some(o) if o.meta == reg.meta && o.tags == reg.tags && o.name == reg.name => {
                if let Some(passing) = health_passing(reg)
                    && health_passing(o) != Some(passing)
                {
                    steps.push(Step::Health { service_id: reg.id.clone(), passing });
                }
            }
            _ => steps.push(Step::Register(reg.clone())),
        }
    }
    for o in old.iter().filter(|o| !new.iter().any(|n| n.id == o.id)) {
        steps.push(Step::Deregister(o.id.clone()));
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use consul::CheckRegistration;

    use super::*;

    fn reg(id: &str, hash: &str, health: Option<&str>) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            name: "web".into(),
            meta: BTreeMap::from([("registrar-hash".to_string(), hash.to_string())]),
            checks: health
                .map(|s| CheckRegistration { check_id: health_check_id(id), status: s.into(), ..Default::default() })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_workload_is_registered() {
        let a = reg("n:a:80", "1", None);
        assert_eq!(steps(&[], std::slice::from_ref(&a)), [Step::Register(a)]);
    }

    #[test]
    fn a_gone_workload_is_deregistered() {
        assert_eq!(steps(&[reg("n:a:80", "1", None)], &[]), [Step::Deregister("n:a:80".into())]);
    }

    #[test]
    fn nothing_changed_means_no_call() {
        let a = reg("n:a:80", "1", Some("passing"));
        assert!(steps(std::slice::from_ref(&a), std::slice::from_ref(&a)).is_empty());
    }

    #[test]
    fn a_health_flip_is_a_check_update_not_a_registration() {
        let sick = reg("n:a:80", "1", Some("critical"));
        let well = reg("n:a:80", "1", Some("passing"));
        assert_eq!(
            steps(std::slice::from_ref(&sick), std::slice::from_ref(&well)),
            [Step::Health { service_id: "n:a:80".into(), passing: true }]
        );
        assert_eq!(steps(&[well], &[sick]), [Step::Health { service_id: "n:a:80".into(), passing: false }]);
    }

    #[test]
    fn a_changed_registration_is_registered_again() {
        let before = reg("n:a:80", "1", None);
        let mut tags = before.clone();
        tags.tags.push("t".into());
        let after = reg("n:a:80", "2", None);
        assert_eq!(steps(std::slice::from_ref(&before), std::slice::from_ref(&after)), [Step::Register(after)]);
        assert_eq!(steps(std::slice::from_ref(&before), std::slice::from_ref(&tags)), [Step::Register(tags)]);
    }

    #[test]
    fn a_rename_registers_the_new_id_before_removing_the_old() {
        let old = reg("n:a:80", "1", None);
        let new = reg("n:b:80", "2", None);
        assert_eq!(steps(&[old], std::slice::from_ref(&new)), [Step::Register(new), Step::Deregister("n:a:80".into())]);
    }

    #[test]
    fn health_passing_reads_the_owned_check_only() {
        assert_eq!(health_passing(&reg("x", "1", None)), None);
        assert_eq!(health_passing(&reg("x", "1", Some("passing"))), Some(true));
        assert_eq!(health_passing(&reg("x", "1", Some("critical"))), Some(false));
        let mut other = reg("x", "1", None);
        other.checks.push(CheckRegistration {
            check_id: "service:x".into(),
            status: "passing".into(),
            ..Default::default()
        });
        assert_eq!(health_passing(&other), None);
    }
}
