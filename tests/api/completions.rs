//! The completion scripts and the man pages the package ships, as the binary prints them.

use std::process::Output;

use tokio::process::Command;

async fn run(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_sofiia-console"))
        .args(args)
        .env_clear()
        .output()
        .await
        .expect("run sofiia-console");
    assert!(
        output.status.success(),
        "sofiia-console {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn completion_scripts_know_the_subcommands() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef sofiia-console"),
        ("fish", "complete -c sofiia-console"),
    ] {
        let script = String::from_utf8(run(&["completions", shell]).await.stdout).unwrap();
        assert!(script.contains(marker), "{shell} script: {script}");
        for subcommand in ["serve", "keys", "backup", "completions"] {
            assert!(
                script.contains(subcommand),
                "{shell} script lacks {subcommand}"
            );
        }
    }
}

#[tokio::test]
async fn the_man_page_is_roff() {
    let page = String::from_utf8(run(&["manpage"]).await.stdout).unwrap();
    assert!(page.contains("\n.TH sofiia-console 1 "), "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    assert!(page.contains("sofiia\\-console\\-serve(1)"), "{page}");
}

/// Every page a page refers to (`sofiia-console-keys(1)` under SUBCOMMANDS) is written too.
#[tokio::test]
async fn the_man_pages_refer_only_to_pages_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    run(&["manpage", "--dir", dir.path().to_str().unwrap()]).await;
    let mut pages = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let page = std::fs::read_to_string(&path).unwrap();
        for reference in page.lines().filter_map(|l| l.strip_suffix("(1)")) {
            let file = format!("{}.1", reference.replace("\\-", "-"));
            assert!(
                dir.path().join(&file).exists(),
                "{} refers to {file}, which was not written",
                path.display()
            );
        }
        pages += 1;
    }
    for expected in ["sofiia-console.1", "sofiia-console-keys-create.1"] {
        assert!(dir.path().join(expected).exists(), "{expected} missing");
    }
    assert!(pages > 10, "only {pages} pages");
}
