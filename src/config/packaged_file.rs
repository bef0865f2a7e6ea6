//! The packaged conffile (`packaging/config.toml`) against the configuration it documents. The
//! keys are read from the types themselves, so a setting added to `Config` and not to the file
//! fails here, and so does a documented default that is no longer the real one.

use std::collections::BTreeSet;

use serde_reflection::{ContainerFormat, Format, Registry, Tracer, TracerConfig};

use super::*;

const PACKAGED: &str = include_str!("../../packaging/config.toml");
const UNIT: &str = include_str!("../../systemd/sofiia-console.service");

/// The file with every commented-out setting switched on. A setting left at its default is
/// written `#key = value` (or `#[table]`), with no space after `#`; explanations have one.
fn all_settings_on() -> String {
    PACKAGED
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Every setting of `Config` as a dotted path, traced through its `Deserialize`
/// implementation; the keys of list elements (`agents.nodes`) are listed under the list.
fn config_keys() -> BTreeSet<String> {
    let mut tracer = Tracer::new(TracerConfig::default());
    // The tracer explores an enum's variants only for the type it is asked about, and a socket
    // address is an enum to it; an enum-typed setting added later fails `registry()` here.
    tracer
        .trace_simple_type::<SocketAddr>()
        .expect("trace a socket address");
    let (format, _) = tracer
        .trace_simple_type::<Config>()
        .expect("trace the configuration types");
    let registry = tracer.registry().expect("every traced type is complete");
    let mut keys = BTreeSet::new();
    collect_config_keys(&registry, &format, "", &mut keys);
    keys
}

fn collect_config_keys(
    registry: &Registry,
    format: &Format,
    path: &str,
    keys: &mut BTreeSet<String>,
) {
    match format {
        Format::TypeName(name) => match &registry[name] {
            ContainerFormat::Struct(fields) => {
                for field in fields {
                    collect_config_keys(registry, &field.value, &join(path, &field.name), keys);
                }
            }
            _ => {
                keys.insert(path.to_owned());
            }
        },
        Format::Option(inner) | Format::Seq(inner) => {
            collect_config_keys(registry, inner, path, keys)
        }
        _ => {
            keys.insert(path.to_owned());
        }
    }
}

/// The file's settings as dotted paths to their values, list elements under the list.
fn file_settings(table: &toml::Table, path: &str, out: &mut Vec<(String, toml::Value)>) {
    for (key, value) in table {
        let path = join(path, key);
        match value {
            toml::Value::Table(inner) => file_settings(inner, &path, out),
            toml::Value::Array(items)
                if !items.is_empty() && items.iter().all(|i| i.is_table()) =>
            {
                for inner in items.iter().filter_map(toml::Value::as_table) {
                    file_settings(inner, &path, out);
                }
            }
            _ => out.push((path, value.clone())),
        }
    }
}

fn settings_of(text: &str) -> Vec<(String, toml::Value)> {
    let table: toml::Table = text.parse().expect("the packaged file is TOML");
    let mut settings = Vec::new();
    file_settings(&table, "", &mut settings);
    settings
}

fn load(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    Config::load_from(&flags, [])
}

#[test]
fn the_packaged_file_documents_every_setting() {
    let documented: BTreeSet<String> = settings_of(&all_settings_on())
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let missing: Vec<_> = config_keys().difference(&documented).cloned().collect();
    assert!(
        missing.is_empty(),
        "packaging/config.toml does not document {missing:?}"
    );
}

#[test]
fn the_packaged_file_loads_as_shipped_and_with_every_setting_on() {
    load(PACKAGED).expect("the packaged file as shipped");
    load(&all_settings_on()).expect("the packaged file with every setting switched on");
}

#[test]
fn commented_out_settings_show_their_defaults() {
    let shipped: BTreeSet<String> = settings_of(PACKAGED).into_iter().map(|(k, _)| k).collect();
    let shown: HashMap<String, toml::Value> = settings_of(&all_settings_on()).into_iter().collect();
    let mut defaults = Vec::new();
    file_settings(
        &toml::Table::try_from(Config::default()).unwrap(),
        "",
        &mut defaults,
    );
    for (key, default) in defaults {
        if shipped.contains(&key) {
            continue;
        }
        match shown.get(&key) {
            Some(value) => assert_eq!(
                value, &default,
                "packaging/config.toml shows a wrong default for {key}"
            ),
            // A list of tables (`agents.nodes`, empty by default) is shown by an example element.
            None => assert!(
                shown.keys().any(|k| k.starts_with(&format!("{key}."))),
                "packaging/config.toml does not show {key}"
            ),
        }
    }
}

/// The service reads the packaged file and keeps its data and logs where its unit lets it
/// write: the unit names the file and no flag overrides what the file sets.
#[test]
fn the_unit_runs_with_the_packaged_file() {
    let exec_start = UNIT
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("the unit has ExecStart=");
    assert_eq!(
        exec_start,
        format!("/usr/bin/sofiia-console serve --config {DEFAULT_CONFIG_FILE}")
    );
    let shipped = load(PACKAGED).unwrap();
    assert!(UNIT.contains("\nStateDirectory=sofiia-console\n"));
    assert_eq!(shipped.data_dir, Path::new("/var/lib/sofiia-console"));
    assert!(UNIT.contains("\nLogsDirectory=sofiia-console\n"));
    assert_eq!(
        shipped.log.dir.as_deref(),
        Some(Path::new("/var/log/sofiia-console"))
    );
}
