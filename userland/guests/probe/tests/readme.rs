//! README.md documents every constant a VMM must match, with the values `src/layout.rs` and
//! `src/parameters.rs` hold (so changing one without the other fails here).
use guest_probe::check::{unexpected_exception_status, Check};
use guest_probe::layout::{
    msr, test_device, BOOT_END, DEBUG_EXIT_PORT, IMAGE_BASE, IMAGE_LIMIT, PARAMETERS_ADDRESS,
    REAL_MODE_ENTRY, TEST_DEVICE_BASE, TIMER_VECTOR, UART_BASE, UNCACHED_FROM,
};
use guest_probe::parameters::{COMMAND_LINE_CAPACITY, MAGIC, VERSION};

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    std::fs::read_to_string(path).expect("README.md is readable")
}

/// The README shows `value` as code: `` `0x...` ``.
fn assert_documented(readme: &str, what: &str, value: u64) {
    let shown = format!("`{value:#x}`");
    assert!(
        readme.contains(&shown),
        "README.md does not show {what} as {shown}"
    );
}

#[test]
fn readme_lists_every_constant_with_its_value() {
    let text = readme();
    let constants = [
        ("the UART base port", u64::from(UART_BASE.0)),
        ("the debug-exit port", u64::from(DEBUG_EXIT_PORT.0)),
        ("the MMIO test device base", TEST_DEVICE_BASE.0),
        ("the test device ID", u64::from(test_device::ID)),
        ("the timer vector", u64::from(TIMER_VECTOR)),
        ("the unknown MSR", u64::from(msr::UNKNOWN)),
        ("the parameter block address", PARAMETERS_ADDRESS.0),
        ("the parameter block magic", u64::from(MAGIC)),
        ("the real-mode entry", REAL_MODE_ENTRY.0),
        ("the end of the boot page", BOOT_END.0),
        ("the image base", IMAGE_BASE.0),
        ("the image limit", IMAGE_LIMIT.0),
        ("the start of the uncached identity map", UNCACHED_FROM.0),
    ];
    for (what, value) in constants {
        assert_documented(&text, what, value);
    }
    assert!(text.contains(&format!("version {VERSION}")));
    assert!(text.contains(&format!("at most {COMMAND_LINE_CAPACITY}")));
}

#[test]
fn readme_lists_every_status() {
    let text = readme();
    for check in Check::ALL {
        let row = format!("| {} | `{}` |", check.status(), check.name());
        assert!(text.contains(&row), "README.md lacks the row {row}");
    }
    let page_fault = unexpected_exception_status(14);
    assert!(text.contains(&format!("{page_fault:#x} for #PF")));
}

#[test]
fn documented_constants_are_found_and_absent_ones_are_not() {
    // The helper itself can fail: a value the README does not show is reported.
    let text = readme();
    let result = std::panic::catch_unwind(|| assert_documented(&text, "nothing", 0xdead_beef_1234));
    assert!(result.is_err());
}
