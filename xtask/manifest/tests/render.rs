//! The rendered report: plain text (no colour) when not on a terminal, every error listed.

#[test]
fn rendered_report_is_plain_and_complete() {
    let text = "[system]\nname = \"t\"\n[[guest]]\nname = \"g\"\nmemroy = \"64M\"\ncpus = [3]\nkernel = \"builtin:prob\"\n";
    let rendered = sluice_manifest::load_str("bad.toml", text)
        .unwrap_err()
        .to_string();
    println!("{rendered}");
    assert!(
        !rendered.contains('\u{1b}'),
        "colour escapes in non-tty output"
    );
    assert!(rendered.contains("bad.toml:5:1: `guest[0].memroy`: unknown key `memroy`"));
    assert!(rendered.contains("did you mean `memory`?"));
    assert!(rendered.contains("bad.toml:6:9: `guest[0].cpus[0]`: host CPU 3 does not exist"));
    assert!(rendered.contains("did you mean \"builtin:probe\"?"));
    assert!(rendered.ends_with("bad.toml: 4 errors in the manifest; nothing was built"));
}
