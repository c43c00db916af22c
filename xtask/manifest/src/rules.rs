//! The catalogue of validation rules: one stable code per rule, with what it checks.
//! docs/manifest.md lists the same codes; a test checks every code has a negative test.

macro_rules! rules {
    ($($name:ident = $code:literal : $summary:literal;)*) => {
        $(#[doc = $summary] pub const $name: &str = $code;)*
        /// Every rule: (code, one-line summary).
        pub const ALL: &[(&str, &str)] = &[$(($code, $summary)),*];
    };
}

rules! {
    FILE_UNREADABLE = "manifest::file-unreadable": "the manifest file cannot be read";
    TOML_SYNTAX = "manifest::toml-syntax": "the file is not valid TOML";
    UNKNOWN_KEY = "manifest::unknown-key": "a key the schema does not know (with a did-you-mean)";
    WRONG_TYPE = "manifest::wrong-type": "a value of the wrong TOML type";
    MISSING_KEY = "manifest::missing-key": "a required key is absent";
    BAD_SIZE = "manifest::bad-size": "a size that is not <number>[K|M|G|T] or is zero/overflowing";
    MEMORY_NOT_ALIGNED = "manifest::memory-not-2mib-multiple": "memory not a multiple of 2 MiB";
    BAD_BDF = "manifest::bad-bdf": "a host or guest BDF that does not parse or is out of range";
    BAD_ADDR = "manifest::bad-addr": "a device addr that is not SS.F with slot <= 31 and function <= 7";
    BAD_NAME = "manifest::bad-name": "a name or id with characters other than a-z 0-9 - _ or too long";
    DUPLICATE_GUEST = "manifest::duplicate-guest-name": "two guests with one name";
    DUPLICATE_DEVICE_ID = "manifest::duplicate-device-id": "two machine devices with one id";
    UNKNOWN_MODEL = "manifest::unknown-device-model": "a device model xtask does not know";
    UNKNOWN_BUS = "manifest::unknown-bus": "bus names a device id that does not exist";
    BUS_NOT_A_BRIDGE = "manifest::bus-not-a-bridge": "bus names a device that provides no bus";
    BUS_PLACEMENT = "manifest::bus-placement": "a model placed on a kind of bus it cannot sit on";
    BUS_DECLARED_LATER = "manifest::bus-declared-later": "a device listed before the bus it sits on";
    ADDRESS_IN_USE = "manifest::address-in-use": "two devices (or a built-in one) at one bus and addr";
    BUS_FULL = "manifest::bus-full": "no free slot left on a bus for a device without addr";
    SLOT_BEHIND_PORT = "manifest::slot-behind-pcie-port": "a non-zero slot below a PCIe root or downstream port";
    FUNCTION_ZERO_MISSING = "manifest::function-zero-missing": "function N>0 of a slot without function 0";
    MULTIFUNCTION_NOT_SET = "manifest::multifunction-not-set": "function 0 of a multi-function slot without multifunction = true";
    PROPS_NOT_SCALAR = "manifest::props-not-scalar": "a props value that is a table or array";
    PROP_RESERVED = "manifest::prop-reserved": "a props key the manifest itself controls (id, bus, addr, ...)";
    DISK_NOT_SUPPORTED = "manifest::disk-not-supported": "disk on a model that has no storage";
    SRIOV_NOT_SUPPORTED = "manifest::sriov-not-supported": "sriov_max_vfs on a model without SR-IOV";
    SRIOV_VF_COLLISION = "manifest::sriov-vf-collision": "a virtual function lands on a function another device uses";
    SRIOV_VF_UNKNOWN = "manifest::sriov-vf-unknown": "a .vfN reference beyond sriov_max_vfs";
    MACHINE_CPUS = "manifest::machine-cpus-out-of-range": "machine.cpus is 0 or above 64";
    NO_GUESTS = "manifest::no-guests": "a system without any [[guest]]";
    GUEST_WITHOUT_CPUS = "manifest::guest-without-cpus": "a guest that owns no host CPU";
    CPU_BEYOND_MACHINE = "manifest::cpu-beyond-machine": "a host CPU number >= machine.cpus";
    CPU_OWNED_TWICE = "manifest::cpu-owned-twice": "a host CPU owned by two guests (or listed twice)";
    VCPUS_ZERO = "manifest::vcpus-zero": "vcpus = 0";
    VCPUS_EXCEED_CPUS = "manifest::vcpus-exceed-cpus": "more vCPUs than owned host CPUs (pinning is strict)";
    MEMORY_OVERCOMMIT = "manifest::memory-overcommit": "guest memory plus the hypervisor reserve exceeds the machine";
    KERNEL_BUILTIN_UNKNOWN = "manifest::kernel-builtin-unknown": "builtin:<name> that is not a built-in guest";
    KERNEL_FILE_MISSING = "manifest::kernel-file-missing": "a kernel path that does not exist";
    DEVICE_UNKNOWN = "manifest::device-unknown": "guest.pci.device names no machine device or BDF";
    DEVICE_NOT_ASSIGNABLE = "manifest::device-not-assignable": "a bridge, port or chassis device assigned to a guest";
    DEVICE_ASSIGNED_TWICE = "manifest::device-assigned-twice": "one function assigned twice";
    FUNCTION_SPLIT = "manifest::function-split": "functions of one slot assigned to different guests";
    IOMMU_GROUP_SPLIT = "manifest::iommu-group-split": "devices of one IOMMU group assigned to different guests";
    INTX_SHARED = "manifest::intx-line-shared": "INTx-only devices of different guests on one host interrupt line";
    BAR_PAGE_SHARED = "manifest::bar-page-shared": "a sub-page BAR that could share a 4 KiB page with another guest's device";
    VBDF_COLLISION = "manifest::vbdf-collision": "two functions at one guest BDF";
    VBDF_RESERVED = "manifest::vbdf-reserved": "a guest BDF at 00:00.x (the guest's host bridge)";
    INTERRUPT_REMAPPING_REQUIRED = "manifest::interrupt-remapping-required": "passthrough with iommu = false and no insecure opt-in";
}
