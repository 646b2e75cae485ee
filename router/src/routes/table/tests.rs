//! Table tests: assembly from tags and overrides, weights, and lookup order.

use super::*;

fn inst(service: &str, id: &str, port: u16, tags: &[&str]) -> Instance {
    Instance {
        service: service.into(),
        id: id.into(),
        address: "10.0.0.1".into(),
        port,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn build(instances: &[Instance], overrides: &str) -> (Table, Vec<Problem>) {
    Table::build(instances, overrides, "urlprefix-")
}

#[test]
fn one_tag_one_route() {
    let (t, problems) = build(&[inst("web", "web-1", 8080, &["urlprefix-example.com/"])], "");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(t.len(), 1);
    let r = t.lookup("example.com", "/x").expect("route");
    assert_eq!(r.service, "web");
    assert_eq!(r.targets[0].url, "http://10.0.0.1:8080/");
    assert_eq!(r.pick(Strategy::Rr, &[]).map(|(i, _)| i), Some(0));
}
