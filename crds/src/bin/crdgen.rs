//! Writes the CRD YAML under `crds/yaml/` and `charts/weir/crds/` (or into
//! the directory given).
//! `crdgen --check` exits non-zero when the files differ from the code.
//! `crdgen --largest-gateway FILE` writes the largest EdgeGateway the schema
//! allows (JSON, name `largest` in namespace `weir-riverside-water`) and
//! prints the size in bytes of its signed bundle as a ConfigMap holds it.

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--largest-gateway") {
        let Some(file) = args.get(i + 1) else {
            eprintln!("usage: crdgen --largest-gateway FILE");
            std::process::exit(2);
        };
        let gw = weir_crds::gateway::largest::largest_gateway("largest", "weir-riverside-water");
        std::fs::write(file, serde_json::to_vec(&gw).expect("gateway serializes"))
            .unwrap_or_else(|e| panic!("write {file}: {e}"));
        let bundle = weir_crds::gateway::largest::stored_bundle(
            &weir_crds::gateway::largest::largest_config(),
        );
        println!("{}", bundle.len());
        return;
    }
    let check = args.iter().any(|a| a == "--check");
    // Without a directory: crds/yaml/ and the Helm chart's copy.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dirs: Vec<PathBuf> = match args.iter().find(|a| !a.starts_with("--")) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![manifest.join("yaml"), manifest.join("../charts/weir/crds")],
    };
    let mut stale = false;
    for (dir, (file, crd)) in dirs
        .iter()
        .flat_map(|d| weir_crds::all_crds().into_iter().map(move |c| (d, c)))
    {
        let path = dir.join(file);
        let text = weir_crds::crd_yaml(&crd);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                eprintln!("{} is out of date", path.display());
                stale = true;
            }
        } else {
            std::fs::create_dir_all(dir).expect("create output directory");
            std::fs::write(&path, text).expect("write CRD");
            println!("wrote {}", path.display());
        }
    }
    if stale {
        eprintln!("run: cargo run -p weir-crds --bin crdgen");
        std::process::exit(1);
    }
}
