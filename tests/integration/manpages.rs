//! The man pages committed in `man/` must match what clap_mangen makes of the clap definitions,
//! so a new or renamed option cannot ship with a stale page.

use crate::support::man;

#[test]
fn man_pages_are_current() {
    for (name, text) in man::pages() {
        let path = format!("{}/man/{name}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == text,
            "man/{name} is stale; regenerate the man pages with:\n  cargo run --example man"
        );
    }
}

/// The page a user opens with `man bnx`: a synopsis that says what each option takes, and the
/// sections a man page reader looks for, ENVIRONMENT, FILES and EXIT STATUS, all from the
/// definitions `--help` is made of.
#[test]
fn the_bnx_page_shows_what_each_option_takes_and_the_usual_sections() {
    use clap::CommandFactory;
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/bnx.1")).unwrap();
    let section = |title: &str| -> String {
        let after = page
            .split(&format!("\n.SH {title}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {title} section"));
        after.split("\n.SH ").next().unwrap().to_string()
    };
    let roff = |text: &str| text.replace('-', "\\-");
    let synopsis = section("SYNOPSIS");
    let mut command = bnx::cli::Cli::command();
    command.build();
    let mut options = 0;
    for arg in command.get_arguments() {
        let (Some(long), Some(values)) = (arg.get_long(), arg.get_value_names()) else {
            continue;
        };
        if !arg.get_action().takes_values() {
            continue;
        }
        let shown = format!(
            "\\fB\\-\\-{}\\fR \\fI{}\\fR]",
            roff(long),
            roff(&values.join(" "))
        );
        assert!(
            synopsis.contains(&shown),
            "{shown} is not in the synopsis: {synopsis}"
        );
        options += 1;
    }
    assert!(options >= 20, "{options} options with a value");
    assert!(synopsis.contains("[\\fB\\-f\\fR|\\fB\\-\\-file\\fR \\fIPATH\\fR]..."));
    assert!(synopsis.contains("[\\fIPROMPT\\fR]..."));
    let environment = section("ENVIRONMENT");
    for name in ["BLUENEXUS_TOKEN", "BLUENEXUS_BASE_URL", "HTTPS_PROXY"] {
        assert!(environment.contains(name), "{name}: {environment}");
    }
    let files = section("FILES");
    for path in [
        "~/.config/bluenexus/token",
        "~/.local/state/bluenexus/",
        "pace/",
    ] {
        assert!(files.contains(&roff(path)), "{path}: {files}");
    }
    let status = section("\"EXIT STATUS\"");
    for code in [0, 1, 2, 3, 4, 65, 69, 74, 75, 76, 77, 78, 130] {
        assert!(status.contains(&format!("\n  {code} ")), "{code}: {status}");
    }
}
