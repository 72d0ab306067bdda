//! Writes the CRD YAML under `crds/yaml/` (or the directory given).
//! `crdgen --check` exits non-zero when the files differ from the code.

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("yaml"));
    let mut stale = false;
    for (file, crd) in weir_crds::all_crds() {
        let path = dir.join(file);
        let text = weir_crds::crd_yaml(&crd);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                eprintln!("{} is out of date", path.display());
                stale = true;
            }
        } else {
            std::fs::create_dir_all(&dir).expect("create output directory");
            std::fs::write(&path, text).expect("write CRD");
            println!("wrote {}", path.display());
        }
    }
    if stale {
        eprintln!("run: cargo run -p weir-crds --bin crdgen");
        std::process::exit(1);
    }
}
