//! The workspace's one dependency rule, read from `cargo metadata`: both
//! runtimes depend on the shared core, never on each other, and the core on
//! neither; test-only code stays out of what the runtimes ship.

use std::collections::HashMap;
use std::process::Command;

use integration::workspace_root;
use serde_json::Value;

/// A dependency as a manifest declares it.
struct Dependency {
    name: String,
    /// None for a normal dependency, else `dev` or `build`.
    kind: Option<String>,
    features: Vec<String>,
}

/// Each workspace package's dependencies.
fn dependencies() -> HashMap<String, Vec<Dependency>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|d| {
                    let features = d["features"]
                        .as_array()
                        .map(|f| {
                            f.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    Dependency {
                        name: d["name"].as_str().expect("name").to_owned(),
                        kind: d["kind"].as_str().map(str::to_owned),
                        features,
                    }
                })
                .collect();
            (p["name"].as_str().expect("name").to_owned(), deps)
        })
        .collect()
}

fn depends_on(deps: &[Dependency], name: &str) -> bool {
    deps.iter().any(|d| d.name == name)
}

/// Whether `from` reaches `to` through what it ships: normal and build
/// dependencies, followed through every workspace package on the way (a
/// crate between the runtimes would hide the arrow from a direct check).
fn reaches(packages: &HashMap<String, Vec<Dependency>>, from: &str, to: &str) -> bool {
    let mut seen = vec![from.to_owned()];
    let mut next = vec![from.to_owned()];
    while let Some(name) = next.pop() {
        for dep in packages[&name]
            .iter()
            .filter(|d| d.kind.as_deref() != Some("dev"))
        {
            if dep.name == to {
                return true;
            }
            if packages.contains_key(&dep.name) && !seen.contains(&dep.name) {
                seen.push(dep.name.clone());
                next.push(dep.name.clone());
            }
        }
    }
    false
}

#[test]
fn runtimes_depend_on_the_core_and_never_on_each_other() {
    let packages = dependencies();
    let of = |name: &str| {
        packages
            .get(name)
            .unwrap_or_else(|| panic!("package {name}"))
    };
    for runtime in ["runtime-fargate", "runtime-lambda"] {
        assert!(depends_on(of(runtime), "handlers"), "{runtime} → handlers");
    }
    assert!(!reaches(&packages, "runtime-fargate", "runtime-lambda"));
    assert!(!reaches(&packages, "runtime-lambda", "runtime-fargate"));
    for runtime in ["runtime-fargate", "runtime-lambda"] {
        assert!(
            !reaches(&packages, "handlers", runtime),
            "handlers → {runtime}"
        );
    }
}

#[test]
fn the_reach_follows_workspace_crates() {
    let dep = |name: &str, kind: Option<&str>| Dependency {
        name: name.into(),
        kind: kind.map(str::to_owned),
        features: Vec::new(),
    };
    let packages: HashMap<String, Vec<Dependency>> = [
        (
            "a".to_owned(),
            vec![dep("middle", None), dep("tokio", None)],
        ),
        ("middle".to_owned(), vec![dep("b", Some("build"))]),
        ("b".to_owned(), vec![dep("a", Some("dev"))]),
    ]
    .into_iter()
    .collect();
    assert!(reaches(&packages, "a", "b"), "through a crate in between");
    assert!(
        !reaches(&packages, "b", "a"),
        "a dev-dependency ships nothing"
    );
}

#[test]
fn test_only_code_is_a_dev_dependency() {
    let packages = dependencies();
    for runtime in ["runtime-fargate", "runtime-lambda", "handlers"] {
        for dep in packages[runtime].iter().filter(|d| d.kind.is_none()) {
            let ships = |feature: &str| dep.features.iter().any(|f| f == feature);
            if dep.name == "handlers" {
                assert!(!ships("testing"), "{runtime} ships the fakes");
            }
            if dep.name == "tokio" {
                assert!(!ships("test-util"), "{runtime} ships tokio's test-util");
            }
        }
    }
}
