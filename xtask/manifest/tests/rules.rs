//! One negative test per validation rule: each manifest breaks exactly the named rule,
//! and the rendered report names the file, line, key, rule and a fix.

use sluice_manifest::{load_file, load_str, rules};
use std::collections::BTreeSet;
use std::sync::Mutex;

static TESTED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

const SYSTEM: &str = "[system]\nname = \"t\"\n";
const GUEST: &str =
    "[[guest]]\nname = \"g\"\nmemory = \"64M\"\ncpus = [0]\nkernel = \"builtin:probe\"\n";

/// Assert that `text` is refused with `rule` among the rules that fired.
fn fires(rule: &'static str, text: &str) {
    TESTED.lock().unwrap().insert(rule);
    let error = match load_str("case.toml", text) {
        Ok(_) => panic!("expected {rule}, but the manifest was accepted:\n{text}"),
        Err(error) => error,
    };
    assert!(
        error.rules().contains(&rule),
        "expected {rule}, got {:?}\n{error}",
        error.rules()
    );
    let rendered = error.to_string();
    assert!(
        rendered.contains(rule),
        "report lacks the rule code:\n{rendered}"
    );
    assert!(
        rendered.contains("case.toml:"),
        "report lacks file:line:\n{rendered}"
    );
    assert!(rendered.contains("fix:"), "report lacks a fix:\n{rendered}");
}

fn machine(devices: &str) -> String {
    format!("{SYSTEM}[machine]\nmemory = \"1G\"\ncpus = 2\n{devices}")
}

fn two_guests(pci_a: &str, pci_b: &str) -> String {
    format!(
        "[[guest]]\nname = \"a\"\nmemory = \"64M\"\ncpus = [0]\nkernel = \"builtin:probe\"\n{pci_a}\n\
         [[guest]]\nname = \"b\"\nmemory = \"64M\"\ncpus = [1]\nkernel = \"builtin:probe\"\n{pci_b}\n"
    )
}

fn dev(id: &str, model: &str, extra: &str) -> String {
    format!("[[machine.device]]\nid = \"{id}\"\nmodel = \"{model}\"\n{extra}\n")
}

fn pci(device: &str) -> String {
    format!("[[guest.pci]]\ndevice = \"{device}\"\n")
}

#[test]
fn file_unreadable() {
    TESTED.lock().unwrap().insert(rules::FILE_UNREADABLE);
    let error = load_file(std::path::Path::new("/nonexistent/x.toml")).unwrap_err();
    assert_eq!(error.rules(), vec![rules::FILE_UNREADABLE]);
}

#[test]
fn toml_syntax() {
    fires(rules::TOML_SYNTAX, "[system\nname = 1");
}

#[test]
fn unknown_key_with_did_you_mean() {
    let text = format!("{SYSTEM}[[guest]]\nname = \"g\"\nmemroy = \"64M\"\ncpus = [0]\nkernel = \"builtin:probe\"\n");
    fires(rules::UNKNOWN_KEY, &text);
    let rendered = load_str("case.toml", &text).unwrap_err().to_string();
    assert!(rendered.contains("did you mean `memory`"), "{rendered}");
    assert!(rendered.contains("case.toml:5:1"), "{rendered}");
    assert!(rendered.contains("guest[0].memroy"), "{rendered}");
}

#[test]
fn wrong_type() {
    fires(rules::WRONG_TYPE, &format!("{SYSTEM}[[guest]]\nname = 5\nmemory = \"64M\"\ncpus = [0]\nkernel = \"builtin:probe\"\n"));
}

#[test]
fn missing_key() {
    fires(
        rules::MISSING_KEY,
        &format!("{SYSTEM}[[guest]]\nname = \"g\"\ncpus = [0]\nkernel = \"builtin:probe\"\n"),
    );
}

#[test]
fn bad_size() {
    fires(rules::BAD_SIZE, &format!("{SYSTEM}[[guest]]\nname = \"g\"\nmemory = \"64Q\"\ncpus = [0]\nkernel = \"builtin:probe\"\n"));
}

#[test]
fn memory_not_aligned() {
    fires(rules::MEMORY_NOT_ALIGNED, &format!("{SYSTEM}[[guest]]\nname = \"g\"\nmemory = \"63M\"\ncpus = [0]\nkernel = \"builtin:probe\"\n"));
}

#[test]
fn bad_bdf() {
    fires(
        rules::BAD_BDF,
        &format!(
            "{}{GUEST}[[guest.pci]]\ndevice = \"e\"\nvbdf = \"00:40.0\"\n",
            machine(&dev("e", "edu", ""))
        ),
    );
}

#[test]
fn bad_addr() {
    fires(
        rules::BAD_ADDR,
        &format!("{}{GUEST}", machine(&dev("e", "edu", "addr = \"32.0\""))),
    );
}

#[test]
fn bad_name() {
    fires(rules::BAD_NAME, &format!("{SYSTEM}[[guest]]\nname = \"Bad Name\"\nmemory = \"64M\"\ncpus = [0]\nkernel = \"builtin:probe\"\n"));
}

#[test]
fn duplicate_guest_name() {
    let text = format!("{SYSTEM}[machine]\ncpus = 2\n{GUEST}[[guest]]\nname = \"g\"\nmemory = \"64M\"\ncpus = [1]\nkernel = \"builtin:probe\"\n");
    fires(rules::DUPLICATE_GUEST, &text);
}

#[test]
fn duplicate_device_id() {
    fires(
        rules::DUPLICATE_DEVICE_ID,
        &format!(
            "{}{GUEST}",
            machine(&(dev("e", "edu", "") + &dev("e", "edu", "")))
        ),
    );
}

#[test]
fn unknown_device_model() {
    let text = format!("{}{GUEST}", machine(&dev("n", "nvm", "")));
    fires(rules::UNKNOWN_MODEL, &text);
    assert!(load_str("case.toml", &text)
        .unwrap_err()
        .to_string()
        .contains("did you mean `nvme`"));
}

#[test]
fn unknown_bus() {
    fires(
        rules::UNKNOWN_BUS,
        &format!(
            "{}{GUEST}",
            machine(&(dev("rp1", "pcie-root-port", "") + &dev("e", "edu", "bus = \"rp2\"")))
        ),
    );
}

#[test]
fn bus_not_a_bridge() {
    fires(
        rules::BUS_NOT_A_BRIDGE,
        &format!(
            "{}{GUEST}",
            machine(&(dev("x", "edu", "") + &dev("e", "edu", "bus = \"x\"")))
        ),
    );
}

#[test]
fn bus_placement() {
    // A root port behind a root port.
    fires(
        rules::BUS_PLACEMENT,
        &format!(
            "{}{GUEST}",
            machine(
                &(dev("rp1", "pcie-root-port", "")
                    + &dev("rp2", "pcie-root-port", "bus = \"rp1\""))
            )
        ),
    );
}

#[test]
fn bus_declared_later() {
    fires(
        rules::BUS_DECLARED_LATER,
        &format!(
            "{}{GUEST}",
            machine(&(dev("e", "edu", "bus = \"rp1\"") + &dev("rp1", "pcie-root-port", "")))
        ),
    );
}

#[test]
fn address_in_use() {
    // 00:1f.0 is the ICH9 LPC bridge.
    fires(
        rules::ADDRESS_IN_USE,
        &format!("{}{GUEST}", machine(&dev("e", "edu", "addr = \"1f.0\""))),
    );
}

#[test]
fn bus_full() {
    let devices = dev("rp1", "pcie-root-port", "")
        + &dev("a", "edu", "bus = \"rp1\"")
        + &dev("b", "edu", "bus = \"rp1\"");
    fires(rules::BUS_FULL, &format!("{}{GUEST}", machine(&devices)));
}

#[test]
fn slot_behind_pcie_port() {
    fires(
        rules::SLOT_BEHIND_PORT,
        &format!(
            "{}{GUEST}",
            machine(
                &(dev("rp1", "pcie-root-port", "")
                    + &dev("e", "edu", "bus = \"rp1\"\naddr = \"01.0\""))
            )
        ),
    );
}

#[test]
fn function_zero_missing() {
    fires(
        rules::FUNCTION_ZERO_MISSING,
        &format!("{}{GUEST}", machine(&dev("e", "edu", "addr = \"05.1\""))),
    );
}

#[test]
fn multifunction_not_set() {
    fires(
        rules::MULTIFUNCTION_NOT_SET,
        &format!(
            "{}{GUEST}",
            machine(&(dev("a", "edu", "addr = \"05.0\"") + &dev("b", "edu", "addr = \"05.1\"")))
        ),
    );
}

#[test]
fn props_not_scalar() {
    fires(
        rules::PROPS_NOT_SCALAR,
        &format!(
            "{}{GUEST}",
            machine(&dev("e", "edu", "props = { x = [1] }"))
        ),
    );
}

#[test]
fn prop_reserved() {
    fires(
        rules::PROP_RESERVED,
        &format!(
            "{}{GUEST}",
            machine(&dev("e", "edu", "props = { addr = \"05.0\" }"))
        ),
    );
}

#[test]
fn disk_not_supported() {
    fires(
        rules::DISK_NOT_SUPPORTED,
        &format!("{}{GUEST}", machine(&dev("e", "edu", "disk = \"64M\""))),
    );
}

#[test]
fn sriov_not_supported() {
    fires(
        rules::SRIOV_NOT_SUPPORTED,
        &format!(
            "{}{GUEST}",
            machine(&dev("e", "e1000e", "props = { sriov_max_vfs = 2 }"))
        ),
    );
}

#[test]
fn sriov_vf_collision() {
    let devices = dev(
        "n",
        "nvme",
        "addr = \"05.0\"\nmultifunction = true\ndisk = \"1M\"\nprops = { sriov_max_vfs = 2 }",
    ) + &dev("e", "edu", "addr = \"05.2\"");
    fires(
        rules::SRIOV_VF_COLLISION,
        &format!("{}{GUEST}", machine(&devices)),
    );
}

#[test]
fn sriov_vf_unknown() {
    let devices = dev("rp", "pcie-root-port", "")
        + &dev(
            "n",
            "nvme",
            "bus = \"rp\"\ndisk = \"1M\"\nprops = { sriov_max_vfs = 2 }",
        );
    fires(
        rules::SRIOV_VF_UNKNOWN,
        &format!("{}{GUEST}{}", machine(&devices), pci("n.vf2")),
    );
}

#[test]
fn machine_cpus_out_of_range() {
    fires(
        rules::MACHINE_CPUS,
        &format!("{SYSTEM}[machine]\ncpus = 65\n{GUEST}"),
    );
}

#[test]
fn no_guests() {
    fires(rules::NO_GUESTS, SYSTEM);
}

#[test]
fn guest_without_cpus() {
    fires(rules::GUEST_WITHOUT_CPUS, &format!("{SYSTEM}[[guest]]\nname = \"g\"\nmemory = \"64M\"\ncpus = []\nvcpus = 1\nkernel = \"builtin:probe\"\n"));
}

#[test]
fn cpu_beyond_machine() {
    fires(rules::CPU_BEYOND_MACHINE, &format!("{SYSTEM}[[guest]]\nname = \"g\"\nmemory = \"64M\"\ncpus = [1]\nkernel = \"builtin:probe\"\n"));
}

#[test]
fn cpu_owned_twice() {
    fires(rules::CPU_OWNED_TWICE, &format!("{SYSTEM}[machine]\ncpus = 2\n{GUEST}[[guest]]\nname = \"h\"\nmemory = \"64M\"\ncpus = [0]\nkernel = \"builtin:probe\"\n"));
}

#[test]
fn vcpus_zero() {
    fires(rules::VCPUS_ZERO, &format!("{GUEST}vcpus = 0\n{SYSTEM}"));
}

#[test]
fn vcpus_exceed_cpus() {
    fires(
        rules::VCPUS_EXCEED_CPUS,
        &format!("{GUEST}vcpus = 2\n{SYSTEM}"),
    );
}

#[test]
fn memory_overcommit() {
    // 400M of guests + 128M reserve > default 512M.
    fires(rules::MEMORY_OVERCOMMIT, &format!("{SYSTEM}[[guest]]\nname = \"g\"\nmemory = \"400M\"\ncpus = [0]\nkernel = \"builtin:probe\"\n"));
}

#[test]
fn kernel_builtin_unknown() {
    fires(rules::KERNEL_BUILTIN_UNKNOWN, &format!("{SYSTEM}[[guest]]\nname = \"g\"\nmemory = \"64M\"\ncpus = [0]\nkernel = \"builtin:prob\"\n"));
}

#[test]
fn kernel_file_missing() {
    fires(rules::KERNEL_FILE_MISSING, &format!("{SYSTEM}[[guest]]\nname = \"g\"\nmemory = \"64M\"\ncpus = [0]\nkernel = \"no/such/bzImage\"\n"));
}

#[test]
fn device_unknown() {
    fires(
        rules::DEVICE_UNKNOWN,
        &format!("{}{GUEST}{}", machine(&dev("edu0", "edu", "")), pci("edu1")),
    );
    fires(
        rules::DEVICE_UNKNOWN,
        &format!(
            "{}{GUEST}{}",
            machine(&dev("edu0", "edu", "")),
            pci("0000:03:00.0")
        ),
    );
}

#[test]
fn device_not_assignable() {
    fires(
        rules::DEVICE_NOT_ASSIGNABLE,
        &format!(
            "{}{GUEST}{}",
            machine(&dev("rp", "pcie-root-port", "")),
            pci("rp")
        ),
    );
}

#[test]
fn device_assigned_twice() {
    let devices = dev("rp", "pcie-root-port", "") + &dev("e", "edu", "bus = \"rp\"");
    fires(
        rules::DEVICE_ASSIGNED_TWICE,
        &format!(
            "{}{}",
            machine(&devices),
            two_guests(&pci("e"), &pci("0000:01:00.0"))
        ),
    );
}

#[test]
fn function_split() {
    let devices = dev("rp", "pcie-root-port", "")
        + &dev(
            "a",
            "edu",
            "bus = \"rp\"\naddr = \"00.0\"\nmultifunction = true",
        )
        + &dev("b", "edu", "bus = \"rp\"\naddr = \"00.1\"");
    fires(
        rules::FUNCTION_SPLIT,
        &format!("{}{}", machine(&devices), two_guests(&pci("a"), &pci("b"))),
    );
}

#[test]
fn iommu_group_split_behind_pcie_pci_bridge() {
    let devices = dev("rp", "pcie-root-port", "")
        + &dev("br", "pcie-pci-bridge", "bus = \"rp\"")
        + &dev("a", "edu", "bus = \"br\"")
        + &dev("b", "edu", "bus = \"br\"");
    fires(
        rules::IOMMU_GROUP_SPLIT,
        &format!("{}{}", machine(&devices), two_guests(&pci("a"), &pci("b"))),
    );
}

#[test]
fn iommu_group_split_below_switch_without_acs() {
    let devices = dev("rp", "pcie-root-port", "")
        + &dev("up", "x3130-upstream", "bus = \"rp\"")
        + &dev("d1", "xio3130-downstream", "bus = \"up\"")
        + &dev("d2", "xio3130-downstream", "bus = \"up\"")
        + &dev("a", "edu", "bus = \"d1\"")
        + &dev("b", "edu", "bus = \"d2\"");
    fires(
        rules::IOMMU_GROUP_SPLIT,
        &format!("{}{}", machine(&devices), two_guests(&pci("a"), &pci("b"))),
    );
}

#[test]
fn intx_line_shared() {
    // Root slots 1 and 5: (1 + 0) % 4 == (5 + 0) % 4, both PIRQB; e1000 has no MSI.
    let devices = dev("a", "e1000", "addr = \"01.0\"") + &dev("b", "e1000", "addr = \"05.0\"");
    fires(
        rules::INTX_SHARED,
        &format!("{}{}", machine(&devices), two_guests(&pci("a"), &pci("b"))),
    );
}

#[test]
fn bar_page_shared() {
    let devices = dev("a", "rtl8139", "addr = \"01.0\"") + &dev("b", "edu", "addr = \"02.0\"");
    fires(
        rules::BAR_PAGE_SHARED,
        &format!("{}{}", machine(&devices), two_guests(&pci("a"), &pci("b"))),
    );
}

#[test]
fn vbdf_collision() {
    let devices = dev("a", "edu", "") + &dev("b", "edu", "");
    let text = format!("{}{GUEST}[[guest.pci]]\ndevice = \"a\"\nvbdf = \"00:05.0\"\n[[guest.pci]]\ndevice = \"b\"\nvbdf = \"00:05.0\"\n", machine(&devices));
    fires(rules::VBDF_COLLISION, &text);
}

#[test]
fn vbdf_reserved() {
    fires(
        rules::VBDF_RESERVED,
        &format!(
            "{}{GUEST}[[guest.pci]]\ndevice = \"a\"\nvbdf = \"00:00.0\"\n",
            machine(&dev("a", "edu", ""))
        ),
    );
}

#[test]
fn interrupt_remapping_required() {
    let text = format!(
        "{SYSTEM}[machine]\nmemory = \"1G\"\niommu = false\n{}{GUEST}{}",
        dev("a", "edu", ""),
        pci("a")
    );
    fires(rules::INTERRUPT_REMAPPING_REQUIRED, &text);
    let allowed = text.replace(
        "name = \"t\"\n",
        "name = \"t\"\ninsecure_no_interrupt_remapping = true\n",
    );
    assert!(load_str("case.toml", &allowed).is_ok());
}

#[test]
fn many_errors_in_one_pass() {
    let text = format!("{SYSTEM}[[guest]]\nname = \"g\"\nmemroy = \"64M\"\ncpus = [5]\nkernel = \"builtin:nope\"\nvcpus = 0\n");
    let rules_fired = load_str("case.toml", &text).unwrap_err().rules();
    for rule in [
        rules::UNKNOWN_KEY,
        rules::MISSING_KEY,
        rules::CPU_BEYOND_MACHINE,
        rules::KERNEL_BUILTIN_UNKNOWN,
        rules::VCPUS_ZERO,
    ] {
        assert!(
            rules_fired.contains(&rule),
            "{rule} missing from {rules_fired:?}"
        );
    }
}

#[test]
fn zz_every_rule_has_a_negative_test() {
    // Runs the other tests' bodies again so coverage does not depend on test order.
    for test in ALL_TESTS {
        test();
    }
    let tested = TESTED.lock().unwrap().clone();
    let missing: Vec<&str> = rules::ALL
        .iter()
        .map(|(code, _)| *code)
        .filter(|c| !tested.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a negative test: {missing:?}"
    );
    assert!(rules::ALL.len() >= 25);
}

const ALL_TESTS: &[fn()] = &[
    file_unreadable,
    toml_syntax,
    unknown_key_with_did_you_mean,
    wrong_type,
    missing_key,
    bad_size,
    memory_not_aligned,
    bad_bdf,
    bad_addr,
    bad_name,
    duplicate_guest_name,
    duplicate_device_id,
    unknown_device_model,
    unknown_bus,
    bus_not_a_bridge,
    bus_placement,
    bus_declared_later,
    address_in_use,
    bus_full,
    slot_behind_pcie_port,
    function_zero_missing,
    multifunction_not_set,
    props_not_scalar,
    prop_reserved,
    disk_not_supported,
    sriov_not_supported,
    sriov_vf_collision,
    sriov_vf_unknown,
    machine_cpus_out_of_range,
    no_guests,
    guest_without_cpus,
    cpu_beyond_machine,
    cpu_owned_twice,
    vcpus_zero,
    vcpus_exceed_cpus,
    memory_overcommit,
    kernel_builtin_unknown,
    kernel_file_missing,
    device_unknown,
    device_not_assignable,
    device_assigned_twice,
    function_split,
    iommu_group_split_behind_pcie_pci_bridge,
    iommu_group_split_below_switch_without_acs,
    intx_line_shared,
    bar_page_shared,
    vbdf_collision,
    vbdf_reserved,
    interrupt_remapping_required,
];
