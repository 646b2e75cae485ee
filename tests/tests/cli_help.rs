//! docs/<daemon>.md and each daemon's `--help` cannot drift apart: every
//! flag `--help` lists is in the doc's flag table with the same environment
//! variable (and default, where both give one), and every flag in the table
//! is in `--help`. Scripts and unit files depend on these names.

use std::collections::BTreeMap;
use std::process::Command;

use integration_tests::bin_path;

fn help(bin: &str) -> String {
    let out = Command::new(bin_path(bin).expect("binary built")).arg("--help").output().expect("runs");
    assert!(out.status.success(), "{bin} --help failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// What one source says about a flag.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Flag {
    env: Option<String>,
    default: Option<String>,
}

/// The flags of clap's long help: `--name` at the start of an entry, then
/// `[env: VAR=...]` and `[default: X]` anywhere in the entry.
fn help_flags(text: &str) -> BTreeMap<String, Flag> {
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let head = t.strip_prefix("-h, ").or_else(|| t.strip_prefix("-V, ")).unwrap_or(t);
        if indent <= 6 && head.starts_with("--") {
            let name: String = head.chars().take_while(|c| !c.is_whitespace()).collect();
            flags.insert(name.clone(), Flag::default());
            current = Some(name);
        }
        let Some(flag) = current.as_ref().and_then(|n| flags.get_mut(n)) else { continue };
        if let Some(rest) = line.split("[env: ").nth(1) {
            let var: String = rest.chars().take_while(|c| *c != '=' && *c != ']').collect();
            flag.env = Some(var);
        }
        if let Some(rest) = line.split("[default: ").nth(1) {
            flag.default = rest.split(']').next().map(str::to_string);
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

/// The rows of the `## Flags` table of docs/<daemon>.md: `` `--name ARG` ``,
/// `` `VAR` ``, default (backticked when literal), what.
fn doc_flags(daemon: &str) -> BTreeMap<String, Flag> {
    let path = format!("{}/../docs/{daemon}.md", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let section = text.split("\n## Flags").nth(1).unwrap_or_else(|| panic!("{path}: no ## Flags section"));
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut flags = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `--")) {
        // `\|` inside a cell (`rr\|rnd`) is not a separator.
        let cells: Vec<String> =
            row.replace("\\|", "/").split('|').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
        let literal = |cell: Option<&String>| {
            cell.and_then(|c| c.strip_prefix('`')).and_then(|c| c.strip_suffix('`')).map(str::to_string)
        };
        let flag_cell = literal(cells.first()).unwrap_or_else(|| panic!("{path}: bad row {row}"));
        let name = flag_cell.split_whitespace().next().unwrap_or_default().to_string();
        let flag = Flag { env: literal(cells.get(1)), default: literal(cells.get(2)) };
        assert!(flags.insert(name.clone(), flag).is_none(), "{path}: {name} documented twice");
    }
    assert!(!flags.is_empty(), "{path}: no flag rows");
    flags
}

fn assert_docs_match_help(daemon: &str) {
    let text = help(daemon);
    let code = help_flags(&text);
    let docs = doc_flags(daemon);
    let mut problems = Vec::new();
    for (name, flag) in &code {
        let Some(doc) = docs.get(name) else {
            problems.push(format!("{name} is in --help but not in docs/{daemon}.md"));
            continue;
        };
        if doc.env != flag.env {
            problems.push(format!("{name}: --help says env {:?}, docs/{daemon}.md says {:?}", flag.env, doc.env));
        }
        if let (Some(code_default), Some(doc_default)) = (&flag.default, &doc.default)
            && code_default != doc_default
        {
            problems.push(format!("{name}: --help default {code_default:?}, docs/{daemon}.md {doc_default:?}"));
        }
    }
    for name in docs.keys().filter(|n| !code.contains_key(*n)) {
        problems.push(format!("{name} is in docs/{daemon}.md but not in --help"));
    }
    assert!(problems.is_empty(), "{daemon}:\n{}\n\n--help:\n{text}", problems.join("\n"));
}

#[test]
fn router_flags_and_docs_agree() {
    assert_docs_match_help("router");
}

#[test]
fn registrar_flags_and_docs_agree() {
    assert_docs_match_help("registrar");
}

#[test]
fn vipd_flags_and_docs_agree() {
    assert_docs_match_help("vipd");
}

/// The checker itself: a flag missing on either side, or a different
/// variable, is found.
#[test]
fn the_checker_finds_drift() {
    let text = "Options:\n      --a <A>\n          x\n          \n          [env: A_VAR=]\n          [default: 1s]\n\n      --b\n          y [env: B_VAR=]\n  -h, --help\n          Print help\n";
    let flags = help_flags(text);
    assert_eq!(flags.keys().collect::<Vec<_>>(), ["--a", "--b"]);
    assert_eq!(flags["--a"], Flag { env: Some("A_VAR".into()), default: Some("1s".into()) });
    assert_eq!(flags["--b"], Flag { env: Some("B_VAR".into()), default: None });
    let docs = doc_flags("router");
    assert_eq!(docs["--strategy"], Flag { env: Some("ROUTER_STRATEGY".into()), default: Some("rr".into()) });
    assert_eq!(docs["--consul-token"], Flag { env: Some("CONSUL_HTTP_TOKEN".into()), default: None });
}

fn vipd_with_advert_interval(value: &str) -> String {
    let out = Command::new(bin_path("vipd").expect("binary built"))
        .args([
            "--interface",
            "lo",
            "--vip",
            "10.0.0.1",
            "--vrid",
            "1",
            "--priority",
            "100",
            "--advert-interval",
            value,
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_duration_is_a_clear_error() {
    let err = vipd_with_advert_interval("soon");
    assert!(err.contains("--advert-interval") && err.contains("not a duration"), "{err}");
}

#[test]
fn a_duration_out_of_bounds_is_refused_naming_the_bounds() {
    let err = vipd_with_advert_interval("0s");
    assert!(err.contains("--advert-interval") && err.contains("between 10ms and 40s 950ms"), "{err}");
    let out = Command::new(bin_path("router").expect("binary built"))
        .args(["--upstream-timeout", "500000000y"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--upstream-timeout") && err.contains("out of range"), "{err}");
    let out =
        Command::new(bin_path("registrar").expect("binary built")).args(["--resync", "0"]).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--resync") && err.contains("between 1s and 1day"), "{err}");
}
