//! Prints the CRDs of kube-transport (`crdgen`), or writes each into a directory
//! (`crdgen --out-dir crds`, what `make crds` runs).
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut out_dir: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out-dir" => match args.next() {
                Some(dir) => out_dir = Some(PathBuf::from(dir)),
                None => return usage("--out-dir needs a directory"),
            },
            "-h" | "--help" => {
                println!(
                    "usage: crdgen [--out-dir DIR]\n  prints the CRDs as one YAML stream, or writes DIR/<plural>.yaml"
                );
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    let files = match operator::crd::crd_files() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("crdgen: cannot write the CRDs as YAML: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out_dir {
        None => {
            let docs: Vec<&str> = files.iter().map(|f| f.yaml.as_str()).collect();
            print!("{}", docs.join("---\n"));
        }
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("crdgen: cannot create {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            for f in &files {
                let path = dir.join(&f.file_name);
                if let Err(e) = std::fs::write(&path, &f.yaml) {
                    eprintln!("crdgen: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                eprintln!("wrote {}", path.display());
            }
        }
    }
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("crdgen: {problem}\nusage: crdgen [--out-dir DIR]");
    ExitCode::from(2)
}
